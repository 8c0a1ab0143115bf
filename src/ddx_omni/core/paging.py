"""Query parameters of the OpenAI-style list routes (`limit`, `order`), checked once for every API."""

from __future__ import annotations

from typing import Any

from .errors import api_error


def page_args(limit: int, order: str, most: int = 100) -> dict[str, Any]:
    """{limit, order} for a store's list call; 400 `invalid_request` (OpenAI's answer) when out of range."""
    if not 1 <= limit <= most:
        raise api_error("invalid_request", f"limit: must be between 1 and {most}", "limit")
    if order not in ("asc", "desc"):
        raise api_error("invalid_request", "order: must be 'asc' or 'desc'", "order")
    return {"limit": limit, "order": order}
