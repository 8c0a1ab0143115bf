"""A real MCP server for the tests, built with the `mcp` package's own server API (2.x `MCPServer`).

    python mcp_demo_server.py stdio COUNTS_FILE
    python mcp_demo_server.py http COUNTS_FILE PORT [TOKEN]   (streamable HTTP at /mcp, SSE at /sse)

COUNTS_FILE gets {"list": n, "call": m} after every tools/list and tools/call: the server's own proof of how
often it was asked. With TOKEN, HTTP requests without `Authorization: Bearer TOKEN` are refused with 401.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer


class CountingServer(MCPServer):
    def __init__(self, counts: Path) -> None:
        super().__init__("demo")
        self.counts_path = counts
        self.counts = {"list": 0, "call": 0}
        self._write()

    def _write(self) -> None:
        self.counts_path.write_text(json.dumps(self.counts))

    async def list_tools(self) -> Any:
        self.counts["list"] += 1
        self._write()
        return await super().list_tools()

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        self.counts["call"] += 1
        self._write()
        return await super().call_tool(name, arguments, context)


def build(counts: Path) -> CountingServer:
    server = CountingServer(counts)

    @server.tool(description="Add two integers")
    def add(a: int, b: int) -> str:
        return f"{a} + {b} = {a + b}"

    @server.tool(description="Repeat a text")
    def echo(text: str) -> str:
        return f"echo: {text}"

    @server.tool(description="Always fails")
    def boom() -> str:
        raise ValueError("boom went the tool")

    @server.tool(description="Sleep, then answer")
    async def nap(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "rested"

    @server.tool(description="Weather of a city, as data")
    def weather(city: str) -> dict[str, Any]:
        return {"city": city, "temp_c": 21}

    @server.tool(description="A long answer")
    def flood(size: int) -> str:
        return "x" * size

    return server


class RequireToken:
    """ASGI middleware: 401 unless the request carries the expected bearer token."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await self.app(scope, receive, send)


def main() -> None:
    mode, counts = sys.argv[1], Path(sys.argv[2])
    server = build(counts)
    if mode == "stdio":
        server.run("stdio")
        return
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    port = int(sys.argv[3])
    token = sys.argv[4] if len(sys.argv) > 4 else None
    if mode == "sse":
        app: Any = server.sse_app()
    else:
        app = server.streamable_http_app()
    if token:
        app = RequireToken(app, token)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    del Starlette, Mount


if __name__ == "__main__":
    main()
