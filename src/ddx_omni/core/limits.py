"""Request body cap: answer 413 before reading (Content-Length) or as soon as the streamed body passes it."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .asgi import HttpMiddleware, StatusWatch
from .errors import error_body


# Multipart framing around an upload (boundaries, part headers, the purpose field) on top of the file's own cap.
MULTIPART_SLACK = 64 * 1024


class BodySizeLimitMiddleware(HttpMiddleware):
    """`routes` names path prefixes with a cap of their own (uploads), as (prefix, max_bytes, setting)."""

    def __init__(self, app: ASGIApp, max_bytes: int, routes: tuple[tuple[str, int, str], ...] = ()) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.routes = routes

    def _cap(self, path: str) -> tuple[int, str]:
        for prefix, cap, setting in self.routes:
            if path == prefix:
                return cap, setting
        return self.max_bytes, "[server].max_body_bytes"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        max_bytes, setting = self._cap(scope["path"])
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > max_bytes:
            await self._reject(scope, send, max_bytes, setting)
            return
        watch = StatusWatch(send)
        received = 0
        rejected = False

        async def counting_receive() -> Message:
            # Past the cap: answer 413 now and tell the app the client left (frameworks swallow exceptions
            # raised while reading the body into their own 400).
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    rejected = True
                    if watch.status is None:
                        await self._reject(scope, send, max_bytes, setting)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await watch(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _reject(self, scope: Scope, send: Send, max_bytes: int, setting: str) -> None:
        body = json.dumps(error_body(scope["path"], 413, "payload_too_large",
                                     f"Request body exceeds {max_bytes} bytes",
                                     f"raise {setting} or send less")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
