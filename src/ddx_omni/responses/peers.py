"""Background responses running on another replica: cancel, read and stream them through their owner.

Why HTTP to the owner rather than events through the database (LISTEN/NOTIFY + an events table): only the owner
holds a running response's live state (its event log, its output so far), so asking it gives the very bytes a
local client would get, with no per-token writes to the shared database (the one part every replica contends
for). Replicas already reach each other on the network behind a load balancer; `[storage].replica_url` says
where. The owner is found in the replicas table, and only while its lease is fresh.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..core.errors import ApiError
from ..core.settings import Settings

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def replica_url(settings: Settings) -> str:
    """This replica's address for the others: [storage].replica_url, or http://<host>:<port> (a wildcard host
    is replaced by this machine's name)."""
    if settings.storage.replica_url:
        return settings.storage.replica_url.rstrip("/")
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{settings.server.port}"


class OwnerUnreachable(ApiError):
    code = "replica_unreachable"


class Peers:
    """An HTTP client for the other replicas, authenticated with this deployment's own key (replicas share
    their configuration, so a key one accepts the others accept)."""

    def __init__(self, settings: Settings) -> None:
        keys = settings.auth.api_keys
        self.headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT, headers=self.headers)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None

    async def call(self, method: str, url: str) -> dict[str, Any]:
        """One JSON request to an owner; its error answers are passed on as they are."""
        answer = await self.forward(method, url)
        if answer.status_code != 200:
            raise _relayed(answer.status_code, answer.json())
        return answer.json()

    async def forward(self, method: str, url: str, *, content: bytes = b"", headers: dict[str, str] | None = None,
                      timeout_s: float | None = None) -> httpx.Response:
        """One request to another replica, relayed as it came → its answer, whatever its status."""
        try:
            return await self.client.request(method, url, content=content, headers=headers,
                                             timeout=TIMEOUT if timeout_s is None else timeout_s)
        except httpx.HTTPError as exc:
            raise OwnerUnreachable(f"the replica {urlsplit(url).netloc} cannot be reached: {type(exc).__name__}")\
                from exc

    async def stream(self, url: str) -> AsyncIterator[bytes]:
        """Open the owner's SSE stream (errors before the first byte raise here) → its bytes, relayed."""
        try:
            answer = await self.client.send(self.client.build_request("GET", url), stream=True)
        except httpx.HTTPError as exc:
            raise OwnerUnreachable(f"the replica running this response cannot be reached: {type(exc).__name__}")\
                from exc
        if answer.status_code != 200:
            await answer.aread()
            await answer.aclose()
            raise _relayed(answer.status_code, answer.json())
        return _relay(answer)


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    finally:
        await answer.aclose()


def _relayed(status: int, body: dict[str, Any]) -> ApiError:
    error = body.get("error") or {}
    return ApiError(body.get("message") or error.get("message") or "the owner replica refused", status=status,
                    code=body.get("code") or error.get("code") or "replica_error", param=error.get("param"))
