"""core.cors answers exactly as Starlette's CORSMiddleware does, with and without an Origin header."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ddx_omni.core.cors import CorsMiddleware

OPTIONS = {"allow_origins": ["http://app.test"], "allow_credentials": True, "allow_methods": ["*"],
           "allow_headers": ["*"], "expose_headers": ["X-Request-ID"]}


def plain(request):
    return PlainTextResponse("hi")


def varies(request):  # a response that already varies: the two Vary values are merged into one header
    return PlainTextResponse("hi", headers={"Vary": "Accept-Encoding"})


def client(middleware: type) -> TestClient:
    routes = [Route("/plain", plain, methods=["GET", "POST"]), Route("/varies", varies)]
    return TestClient(Starlette(routes=routes, middleware=[Middleware(middleware, **OPTIONS)]))


@pytest.mark.parametrize("path", ["/plain", "/varies"])
@pytest.mark.parametrize("headers", [
    {},
    {"Origin": "http://app.test"},
    {"Origin": "http://evil.test"},
    {"Origin": "http://app.test", "Access-Control-Request-Method": "POST"},
])
def test_same_answer_as_starlette(path: str, headers: dict[str, str]) -> None:
    method = "OPTIONS" if "Access-Control-Request-Method" in headers else "GET"
    ours = client(CorsMiddleware).request(method, path, headers=headers)
    stock = client(CORSMiddleware).request(method, path, headers=headers)
    assert (ours.status_code, ours.headers.multi_items(), ours.text) == \
        (stock.status_code, stock.headers.multi_items(), stock.text)
    if not headers:
        assert ours.headers.get_list("vary") == (["Accept-Encoding, Origin"] if path == "/varies" else ["Origin"])
