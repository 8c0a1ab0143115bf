"""CORS: Starlette's middleware, with a short way through for requests that carry no Origin header.

Nearly all API traffic (SDKs, curl, servers) sends no Origin; for those Starlette still parses the request headers
and rewraps `send`, only to add `Vary: Origin` to the response. Here they get that header directly."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

NO_ORIGIN = Headers(raw=[])


class CorsMiddleware(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(key == b"origin" for key, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def send_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if any(key.lower() == b"vary" for key, _ in headers):
                    await self.send(message, send, NO_ORIGIN)  # Starlette's own way: it merges the two
                    return
                message = {**message, "headers": [*headers, (b"vary", b"Origin")]}
            await send(message)

        await self.app(scope, receive, send_vary)
