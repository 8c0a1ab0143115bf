"""Brave Search API: GET /res/v1/web/search with the key in X-Subscription-Token."""

from __future__ import annotations

from pydantic import BaseModel

from ..core.settings import WebSearchSettings
from .provider import HttpProvider, SearchHit, SearchQuery, plain, request_json

API_URL = "https://api.search.brave.com"


class _Result(BaseModel):
    url: str
    title: str | None = ""
    description: str | None = ""


class _Web(BaseModel):
    results: list[_Result] = []


class _Answer(BaseModel):
    web: _Web = _Web()  # Brave leaves `web` out when nothing matched


class BraveProvider(HttpProvider):
    name = "brave"

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        text = query.text
        if query.allowed_domains:  # Brave understands site: operators; the service still filters
            text += " (" + " OR ".join(f"site:{d}" for d in query.allowed_domains) + ")"
        params = {"q": text, "count": str(min(query.max_results, 20))}
        if query.country:
            params["country"] = query.country.lower()
        answer = await request_json(self._client, self.name, _Answer, "GET", "/res/v1/web/search", params=params)
        return [SearchHit(r.url, plain(r.title), plain(r.description)) for r in answer.web.results]


def create(settings: WebSearchSettings) -> BraveProvider:
    assert settings.api_key is not None  # the settings refuse brave without a key
    return BraveProvider(settings.url or API_URL, settings.search_timeout_s,
                         {"Accept": "application/json", "X-Subscription-Token": settings.api_key.get_secret_value()})
