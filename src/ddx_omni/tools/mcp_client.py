"""MCP client connections (the official `mcp` package, 2.x): one kept session per server, each in its own task.

A session is opened on first use and kept: the `mcp` client session lists the tools by itself before a call
whose output schema it has not seen, so a fresh session per call would list on every call (REFERENCE §8);
a kept session lists once, and a listing reused from the history primes a new session's cache instead.
Transports: streamable HTTP; SSE when the URL's path ends in `/sse` (servers that only speak the older
transport); stdio for operator-configured commands. Every wait is bounded by the caller's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("ddx_omni.tools.mcp")

MAX_KEPT_SESSIONS = 32  # client-named servers beyond this close their least recently used session


@dataclass(frozen=True)
class McpTarget:
    """Where a server is and how to reach it. Header values (secrets) live only here, in memory."""

    label: str
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    configured: bool = False  # an operator's [[responses.mcp_servers]] entry

    @property
    def key(self) -> str:
        """Sessions are shared only by identical targets (same credentials); the key holds no secret."""
        digest = hashlib.sha256(repr((self.url, self.headers, self.command, self.args, self.env)).encode())
        return f"{self.label}:{digest.hexdigest()[:16]}"

    @property
    def where(self) -> str:
        return self.url or f"stdio command {self.command}"


class McpUnavailable(Exception):
    """The server could not be reached, refused us, or did not answer in time; the message says which."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass(eq=False)
class McpConnection:
    """One MCP session, held open by a task of its own until `close()`."""

    target: McpTarget
    session: Any = None
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def open(self, timeout: float) -> Any:
        async with self._lock:
            if self.session is not None and self._task is not None and not self._task.done():
                return self.session
            self._stop = asyncio.Event()
            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._hold(ready), name=f"mcp {self.target.label}")
            try:
                self.session = await asyncio.wait_for(asyncio.shield(ready), timeout)
            except TimeoutError:
                await self.close()
                raise McpUnavailable(f"MCP server {self.target.label!r} did not answer the handshake within "
                                     f"{timeout:g} s", 504) from None
            except McpUnavailable:
                await self.close()
                raise
            return self.session

    async def _hold(self, ready: asyncio.Future[Any]) -> None:
        from mcp import ClientSession

        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(_transport(self.target))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                ready.set_result(session)
                await self._stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # anyio wraps transport failures in exception groups
            message = _describe(exc)
            if not ready.done():
                ready.set_exception(McpUnavailable(f"MCP server {self.target.label!r} ({self.target.where}): "
                                                   f"{message}", _status_of(exc)))
            else:
                log.warning("MCP session %s ended: %s", self.target.label, message)
        finally:
            self.session = None
            if not ready.done():
                ready.cancel()

    async def close(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), 5)
            except (TimeoutError, Exception):  # a stuck transport is cancelled instead
                task.cancel()
        self.session = None

    async def list_tools(self, timeout: float) -> list[Any]:
        """Every tool of the server (all pages)."""
        session = await self.open(timeout)
        tools: list[Any] = []
        cursor: str | None = None
        while True:
            from mcp_types import PaginatedRequestParams

            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self._bounded(session.list_tools(params=params), timeout, "listing its tools")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def call_tool(self, name: str, arguments: dict[str, Any], timeout: float) -> Any:
        session = await self.open(timeout)
        return await self._bounded(session.call_tool(name, arguments, read_timeout_seconds=timeout), timeout,
                                   f"running {name!r}")

    async def prime(self, tools: list[dict[str, Any]], timeout: float) -> None:
        """Teach a session the tools of a stored listing, so that its first call does not list them again
        (their output schemas are unknown: results are then not validated against one)."""
        from mcp_types import ListToolsResult, Tool

        session = await self.open(timeout)
        known = getattr(session, "_tool_output_schemas", None)
        absorb = getattr(session, "_absorb_tool_listing", None)  # private in mcp 2.3: guarded, not required
        missing = [t for t in tools if known is not None and t["name"] not in known]
        if absorb is not None and missing:
            absorb(ListToolsResult(tools=[Tool(name=t["name"], input_schema=t.get("input_schema") or {})
                                          for t in missing]), complete=False)

    async def _bounded(self, call: Any, timeout: float, doing: str) -> Any:
        try:
            return await asyncio.wait_for(call, timeout + 1)  # the session's own read timeout comes first
        except TimeoutError:
            raise McpUnavailable(f"MCP server {self.target.label!r} did not answer within {timeout:g} s while "
                                 f"{doing}", 504) from None
        except Exception as exc:
            from mcp import MCPError

            if "timed out" in str(exc).lower():  # the session's read timeout (an MCPError in mcp 2.3)
                raise McpUnavailable(f"MCP server {self.target.label!r} did not answer within {timeout:g} s "
                                     f"while {doing}", 504) from None
            if isinstance(exc, MCPError):
                raise
            await self.close()  # the session is broken: the next use opens a new one
            raise McpUnavailable(f"MCP server {self.target.label!r} failed while {doing}: {_describe(exc)}",
                                 _status_of(exc)) from None


@contextlib.asynccontextmanager
async def _transport(target: McpTarget) -> Any:
    """(read, write) streams of the target's transport."""
    if target.command is not None:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=target.command, args=list(target.args), env=dict(target.env) or None)
        async with stdio_client(params) as streams:
            yield streams
        return
    assert target.url is not None
    headers = dict(target.headers)
    if urlsplit(target.url).path.rstrip("/").endswith("/sse"):
        from mcp.client.sse import sse_client

        async with sse_client(target.url, headers=headers) as streams:
            yield streams
        return
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
    async with http, streamable_http_client(target.url, http_client=http) as streams:
        yield streams


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(exc: BaseException) -> str:
    """A one-line cause, without a traceback (and without request headers: httpx messages carry none)."""
    leaf = _leaves(exc)[0]
    response = getattr(leaf, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code}"
    text = str(leaf) or type(leaf).__name__
    return f"{type(leaf).__name__}: {text}" if text != type(leaf).__name__ else text


def _status_of(exc: BaseException) -> int:
    response = getattr(_leaves(exc)[0], "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else 502


class McpPool:
    """The kept sessions, by target key: configured servers always, client-named ones up to a bound."""

    def __init__(self) -> None:
        self.connections: OrderedDict[str, McpConnection] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()  # evicted sessions being closed (held: tasks are weak)

    def get(self, target: McpTarget) -> McpConnection:
        connection = self.connections.get(target.key)
        if connection is None:
            connection = self.connections[target.key] = McpConnection(target)
            self._evict()
        self.connections.move_to_end(target.key)
        return connection

    def _evict(self) -> None:
        unconfigured = [key for key, c in self.connections.items() if not c.target.configured]
        for key in unconfigured[:max(0, len(unconfigured) - MAX_KEPT_SESSIONS)]:
            task = asyncio.get_running_loop().create_task(self.connections.pop(key).close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        connections, self.connections = list(self.connections.values()), OrderedDict()
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
