"""A fast lane for the hottest operations: a dict lookup and one `model_validate_json` instead of FastAPI's routing
and request handling, which cost more than the mock chat handler itself (BENCHMARKS.md, per-request overhead).

The FastAPI route stays as it is: it documents the operation and answers every request the lane leaves to it —
a body that is not JSON or does not validate (so a 422 keeps FastAPI's exact shape), another content type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_response

Handler = Callable[[Any, Request], Awaitable[Any]]


class LaneOperations:
    """(method, path) → (route, body model): endpoints of the form `async def f(body: Model, request)` whose
    route has no dependencies of its own (the lane runs none; the API key is the gateway layer's)."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], tuple[APIRoute, type[BaseModel]]] = {}

    def add(self, router: APIRouter, method: str, path: str, model: type[BaseModel]) -> None:
        route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == path
                     and method in (r.methods or ()))
        if route.dependencies:
            raise ValueError(f"{method} {path} has dependencies, which the fast lane would skip")
        self.table[(method, path)] = (route, model)


class FastLaneMiddleware:
    def __init__(self, app: ASGIApp, *, operations: LaneOperations) -> None:
        self.app = app
        self.operations = operations.table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.operations.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if found is None or scope.get("root_path") or not _json_request(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left (or the gateway cut the body off at its cap and answered 413)
        route, model = found
        try:
            parsed = model.model_validate_json(body)
        except ValidationError:
            await self.app(scope, _replay(body, receive), send)  # FastAPI answers it, in its own shape
            return
        scope["route"] = route  # what the metrics label and the routed path read
        try:
            response = await route.endpoint(parsed, Request(scope, receive))
        except ApiError as exc:  # as core.errors' handler answers it on the FastAPI route
            response = error_response(scope["path"], exc)
        if not isinstance(response, Response):  # a model: what FastAPI does with it (no response_model)
            response = JSONResponse(jsonable_encoder(response))
        await response(scope, receive, send)


def _json_request(scope: Scope) -> bool:
    kind = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
    return kind.split(b";", 1)[0].strip().lower() == b"application/json"


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
