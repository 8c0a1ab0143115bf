"""The default provider: no search backend. The web_search tool is then not offered to the model."""

from __future__ import annotations

from ..core.settings import WebSearchSettings
from .provider import SearchProvider


def create(_settings: WebSearchSettings) -> SearchProvider | None:
    return None
