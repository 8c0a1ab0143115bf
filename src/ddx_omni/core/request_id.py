"""Request ids: echo the client's (when sane) or mint a uuid4; set it on the response and on every log line."""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logging import request_id_var

MAX_ID_LENGTH = 128


def sane_request_id(value: str | None) -> str:
    if value and len(value) <= MAX_ID_LENGTH and value.isprintable() and value.isascii() and value.strip() == value:
        return value
    return str(uuid.uuid4())


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware) so that streamed bodies pass through untouched."""

    def __init__(self, app: ASGIApp, header: str = "X-Request-ID") -> None:
        self.app = app
        self.header = header
        self.header_key = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == self.header_key), None)
        rid = sane_request_id(given)
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        raw = rid.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != self.header_key]
                headers.append((self.header_key, raw))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
