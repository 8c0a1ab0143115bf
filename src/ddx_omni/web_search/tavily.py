"""Tavily search API: POST /search with the key as a bearer token; allowed domains go as include_domains."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..core.settings import WebSearchSettings
from .provider import HttpProvider, ResultJson, SearchHit, SearchQuery, plain, request_json

API_URL = "https://api.tavily.com"


class _Answer(BaseModel):
    results: list[ResultJson]


class TavilyProvider(HttpProvider):
    name = "tavily"

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        body: dict[str, Any] = {"query": query.text, "max_results": query.max_results, "search_depth": "basic"}
        if query.allowed_domains:
            body["include_domains"] = list(query.allowed_domains)
        answer = await request_json(self._client, self.name, _Answer, "POST", "/search", json=body)
        return [SearchHit(r.url, plain(r.title), plain(r.content)) for r in answer.results]


def create(settings: WebSearchSettings) -> TavilyProvider:
    assert settings.api_key is not None  # the settings refuse tavily without a key
    return TavilyProvider(settings.url or API_URL, settings.search_timeout_s,
                          {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"})
