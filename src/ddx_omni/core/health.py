"""Components (the engines the app starts and stops) and the /health aggregation over them."""

from __future__ import annotations

import time
from typing import Any, Literal, Protocol

from fastapi import APIRouter, Request

from .. import __version__

State = Literal["ready", "loading", "idle", "failed"]


class Component(Protocol):
    """What the lifespan starts and stops, and what /health reports (its dict holds at least `state`)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]: ...


def aggregate(states: list[str]) -> str:
    """Seed 000: any loading → loading; any idle or failed → degraded; all ready → ok."""
    if any(s == "loading" for s in states):
        return "loading"
    if any(s in ("idle", "failed") for s in states):
        return "degraded"
    return "ok"


router = APIRouter(tags=["operations"])


@router.get("/health", summary="Service and component health (always 200)")
@router.get("/healthz", summary="Alias of /health")
def health(request: Request) -> dict[str, Any]:
    components: dict[str, dict[str, Any]] = {
        name: component.health() for name, component in request.app.state.components.items()
    }
    return {
        "status": aggregate([c["state"] for c in components.values()]),
        "version": __version__,
        "uptime_s": round(time.monotonic() - request.app.state.started_at, 3),
        "components": components,
    }
