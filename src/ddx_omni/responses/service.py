"""PLACEHOLDER — replaced by the responses implementation."""

from __future__ import annotations

from typing import Any

from ..core.settings import Settings


class _Pending:
    name = "responses"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"state": "idle"}


def create_service(settings: Settings, *_: object) -> _Pending:
    return _Pending()
