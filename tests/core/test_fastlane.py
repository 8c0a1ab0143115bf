"""The fast lane: valid JSON bodies of its operations skip FastAPI; everything else reaches FastAPI unchanged."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ddx_omni.app import create_app
from ddx_omni.core.errors import RequestInvalid
from ddx_omni.core.fastlane import FastLaneMiddleware, LaneOperations

CHAT = {"model": "m", "messages": [{"role": "user", "content": "What is the weather in Berlin?"}]}


class Body(BaseModel):
    n: int


def lane_app() -> tuple[FastAPI, list[str]]:
    """A FastAPI app whose one route records who called it: FastAPI's request handler (it leaves its exit stack in
    the scope) or the lane."""
    seen: list[str] = []
    router = APIRouter()

    @router.post("/echo")
    async def echo(body: Body, request: Request) -> JSONResponse:
        seen.append("fastapi" if "fastapi_inner_astack" in request.scope else "lane")
        if body.n < 0:
            raise RequestInvalid("n must not be negative", param="n")
        return JSONResponse({"n": body.n, "route": request.scope["route"].path})

    app = FastAPI()
    app.include_router(router)
    operations = LaneOperations()
    operations.add(router, "POST", "/echo", Body)
    app.add_middleware(FastLaneMiddleware, operations=operations)
    return app, seen


def test_valid_body_is_answered_by_the_lane_and_errors_keep_the_envelope():
    app, seen = lane_app()
    with TestClient(app) as client:
        assert client.post("/echo", json={"n": 3}).json() == {"n": 3, "route": "/echo"}
        refused = client.post("/echo", json={"n": -1})
        assert refused.status_code == 422 and refused.json()["code"] == "request_invalid"
    assert seen == ["lane", "lane"]


@pytest.mark.parametrize(("content", "content_type"), [
    (b'{"n": "x"}', "application/json"),  # does not validate: FastAPI's own 422
    (b'{"n": ', "application/json"),  # not JSON
    (b'{"n": 1}', "text/plain"),  # not a JSON request
])
def test_other_requests_reach_fastapi_with_their_body(content, content_type):
    plain, seen = lane_app()
    bare = FastAPI()  # the same route without the lane, for FastAPI's answer
    bare.include_router(plain.router)
    with TestClient(plain) as lane_client, TestClient(bare) as fastapi_client:
        got = lane_client.post("/echo", content=content, headers={"content-type": content_type})
        expected = fastapi_client.post("/echo", content=content, headers={"content-type": content_type})
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())
    assert got.status_code == 422 and seen == []  # FastAPI refused it before the endpoint
    with TestClient(plain) as client:  # and a valid body that is not a lane request: FastAPI's handler
        vendor_json = client.post("/echo", content=b'{"n": 1}', headers={"content-type": "application/vnd.x+json"})
        assert vendor_json.json()["n"] == 1
    assert seen == ["fastapi"]


def test_chat_answers_the_same_through_the_lane_and_through_fastapi(make_settings):
    with TestClient(create_app(make_settings())) as client:
        lane = client.post("/v1/chat/completions", json=CHAT).json()
        routed = client.post("/v1/chat/completions", content=json.dumps(CHAT),
                             headers={"content-type": "application/vnd.api+json"}).json()  # FastAPI takes +json
        invalid = client.post("/v1/chat/completions", json={"model": "m"})
        metrics = client.get("/metrics").text
    for answer in (lane, routed):
        answer.pop("id"), answer.pop("created")
    assert lane == routed and lane["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "request_invalid"
    assert 'route="/v1/chat/completions",status="200"' in metrics
