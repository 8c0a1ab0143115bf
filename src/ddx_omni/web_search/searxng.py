"""SearXNG (self-hosted metasearch): GET {url}/search?q=…&format=json; the json format must be enabled there."""

from __future__ import annotations

from pydantic import BaseModel

from ..core.settings import WebSearchSettings
from .provider import HttpProvider, ResultJson, SearchHit, SearchQuery, plain, request_json


class _Answer(BaseModel):
    results: list[ResultJson]


class SearxngProvider(HttpProvider):
    name = "searxng"

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        # SearXNG has no result-count parameter (about 20 per page); `site:` is not passed on, since its
        # engines differ in what they make of it: allowed domains are filtered by the service.
        params = {"q": query.text, "format": "json", "pageno": "1"}
        answer = await request_json(self._client, self.name, _Answer, "GET", "/search", params=params)
        return [SearchHit(r.url, plain(r.title), plain(r.content)) for r in answer.results]


def create(settings: WebSearchSettings) -> SearxngProvider:
    return SearxngProvider(settings.url, settings.search_timeout_s, {"Accept": "application/json"})
