"""The one ASGI layer every request passes: request id, body cap, API key, HTTP metrics and the last-resort 500.

These were four middlewares, each wrapping `send` (and two `receive`) again; profiled under load, the chain cost
about a quarter of a mock chat request. One layer wraps each once. Pure ASGI, so streamed bodies pass untouched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import ProtectedRoutes, key_problem
from .errors import INTERNAL_ERROR, error_body, error_response
from .logging import request_id_var
from .request_id import sane_request_id

log = logging.getLogger("ddx_omni.errors")


# Multipart framing around an upload (boundaries, part headers, the purpose field) on top of the file's own cap.
MULTIPART_SLACK = 64 * 1024


class HttpMetrics:
    """Request counter, latency histogram and in-flight gauge, with each label set's children cached (the
    `labels()` lookup is a lock and a dict build per call)."""

    def __init__(self, requests: Counter, latency: Histogram, in_flight: Gauge) -> None:
        self.requests, self.latency, self.in_flight = requests, latency, in_flight
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(*key), self.latency.labels(*key))
        children[0].inc()
        children[1].observe(seconds)


class _Exchange:
    """One HTTP request's bookkeeping: the status sent, the body bytes received, whether it was cut off."""

    __slots__ = ("status", "received", "rejected", "cap", "setting")

    def __init__(self, cap: int, setting: str) -> None:
        self.status: int | None = None
        self.received = 0
        self.rejected = False
        self.cap, self.setting = cap, setting  # the body cap of this path, and the setting that sets it


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, *, header: str, max_bytes: int, metrics: HttpMetrics,
                 routes: tuple[tuple[str, int, str], ...] = (), protected: ProtectedRoutes | None = None,
                 api_keys: Sequence[str] = ()) -> None:
        """`routes`: paths with a body cap of their own (uploads), as (path, max_bytes, setting). `protected`:
        the operations that need one of `api_keys` (none configured: every request passes)."""
        self.app = app
        self.protected, self.api_keys = protected or ProtectedRoutes(), api_keys
        self.header_key = header.lower().encode("latin-1")
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.routes = {path: (cap, setting) for path, cap, setting in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == self.header_key), None)
        rid = sane_request_id(given)
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        try:
            if scope["type"] == "http":
                await self._http(scope, receive, send, rid.encode("latin-1"))
            else:
                await self.app(scope, receive, self._id_sender(send, rid.encode("latin-1"), None))
        finally:
            request_id_var.reset(token)

    def _id_sender(self, send: Send, rid: bytes, exchange: _Exchange | None) -> Send:
        key = self.header_key

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                if exchange is not None:
                    if exchange.rejected:
                        return
                    exchange.status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != key]
                headers.append((key, rid))
                message = {**message, "headers": headers}
            elif exchange is not None and exchange.rejected:
                return  # the 413 went out instead of whatever the app answers
            await send(message)

        return send_with_id

    async def _http(self, scope: Scope, receive: Receive, send: Send, rid: bytes) -> None:
        start = time.perf_counter()
        exchange = _Exchange(*self.routes.get(scope["path"], (self.max_bytes, "[server].max_body_bytes")))
        send_with_id = self._id_sender(send, rid, exchange)
        self.metrics.in_flight.inc()
        try:
            if self._declared_too_large(scope, exchange.cap):
                await self._reject(scope, send_with_id, exchange)
                return
            if self.api_keys and self.protected.covers(scope["method"], scope["path"], scope.get("root_path", "")):
                problem = key_problem(Headers(scope=scope), QueryParams(scope["query_string"]), self.api_keys)
                if problem is not None:
                    await error_response(scope["path"], problem)(scope, receive, send_with_id)
                    return
            await self.app(scope, self._counting(receive, send_with_id, scope, exchange), send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if exchange.status is None:  # a stream that already started can only be cut short
                await _send_json(send_with_id, 500, error_body(scope["path"], 500, INTERNAL_ERROR,
                                                               "Internal server error"))
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", "<unmatched>")
            self.metrics.observe(scope["method"], route, exchange.status or 500, time.perf_counter() - start)

    @staticmethod
    def _declared_too_large(scope: Scope, cap: int) -> bool:
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        return length is not None and length.isdigit() and int(length) > cap

    def _counting(self, receive: Receive, send: Send, scope: Scope, exchange: _Exchange) -> Receive:
        async def counting_receive() -> Message:
            # Past the cap: answer 413 now and tell the app the client left (frameworks swallow exceptions
            # raised while reading the body into their own 400).
            if exchange.rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                exchange.received += len(message.get("body", b""))
                if exchange.received > exchange.cap:
                    await self._reject(scope, send, exchange)
                    return {"type": "http.disconnect"}
            return message

        return counting_receive

    async def _reject(self, scope: Scope, send: Send, exchange: _Exchange) -> None:
        if exchange.status is None:
            await _send_json(send, 413, error_body(scope["path"], 413, "payload_too_large",
                                                   f"Request body exceeds {exchange.cap} bytes",
                                                   f"raise {exchange.setting} or send less"))
        exchange.rejected = True


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})
