"""The web search service: the configured provider, the guarded page fetcher and the caches, behind three calls.

`search` asks the provider, keeps the results the request's allowed domains permit and reads the top pages;
`open_page` and `find_in_page` read one page. Pages are fetched only through core.fetch (the SSRF guard),
also when a provider returned them; a fetch that leaves the allowed domains (a redirect too) is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ..core.fetch import Fetcher, FetchError, FetchLimits
from ..core.settings import Settings, WebSearchSettings
from . import brave, none, searxng, tavily
from .cache import TtlCache
from .extract import ACCEPT, Page, extract_page, find_in_text
from .provider import SearchFailed, SearchHit, SearchProvider, SearchQuery, domain_allowed

log = logging.getLogger("ddx_omni.web_search")

# [web_search].provider → its module's factory. A new provider is one module and one line here.
PROVIDERS: dict[str, Callable[[WebSearchSettings], SearchProvider | None]] = {
    "none": none.create, "searxng": searxng.create, "brave": brave.create, "tavily": tavily.create,
}


@dataclass(frozen=True)
class Scope:
    """What one request's tool entry allows: its domains (empty: all), its location, live access."""

    allowed_domains: tuple[str, ...] = ()
    country: str | None = None
    live: bool = True  # external_web_access=false: answer from the cache only


@dataclass(frozen=True)
class PageFailure:
    url: str
    kind: str  # FetchError.kind: timeout, refused, http, unsupported…
    message: str


@dataclass(frozen=True)
class SearchOutcome:
    query: str
    hits: list[SearchHit]
    pages: list[Page | PageFailure]  # the top hits' pages, in the hits' order


@dataclass(frozen=True)
class Matches:
    page: Page
    count: int
    excerpts: list[str]


class WebSearchService:
    """A component (started and stopped with the app); `available` is false with provider `none`."""

    name = "web_search"

    def __init__(self, settings: WebSearchSettings, provider: SearchProvider | None) -> None:
        self.settings = settings
        self._provider = provider
        self._fetcher: Fetcher | None = None
        self._hits: TtlCache[list[SearchHit]] = TtlCache(settings.cache_ttl_s)
        self._pages: TtlCache[Page] = TtlCache(settings.cache_ttl_s)

    @property
    def available(self) -> bool:
        return self._provider is not None

    async def start(self) -> None:
        s = self.settings
        self._fetcher = Fetcher(FetchLimits(timeout_s=s.fetch_timeout_s, max_bytes=s.max_page_bytes,
                                            max_redirects=s.max_redirects,
                                            allow_private_networks=s.allow_private_networks,
                                            allowed_networks=tuple(s.allowed_networks), user_agent=s.user_agent))

    async def stop(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.aclose()
        if self._provider is not None:
            await self._provider.aclose()

    def health(self) -> dict[str, Any]:
        # provider none is a choice, not a fault: the component is ready either way
        return {"state": "ready", "provider": self._provider.name if self._provider else "none"}

    async def search(self, text: str, scope: Scope) -> SearchOutcome:
        """Raises SearchFailed; a page that cannot be read is a PageFailure in the outcome."""
        hits = await self._search_hits(text, scope)
        top = hits[: self.settings.pages_per_search]
        pages = await asyncio.gather(*(self._page_or_failure(hit.url, scope) for hit in top))
        return SearchOutcome(text, hits, list(pages))

    async def open_page(self, url: str, scope: Scope) -> Page:
        """Raises FetchError (refused, timeout, http, unsupported…)."""
        veto = _domain_veto(scope.allowed_domains)
        page = self._pages.get(url)
        if page is not None and veto(httpx.URL(page.url)) is None and veto(httpx.URL(url)) is None:
            return page  # (a cached URL parsed once already)
        if not scope.live:
            raise FetchError("offline", f"{url} is not in the cache and external_web_access is false")
        assert self._fetcher is not None, "the service was not started"
        result = await self._fetcher.get(url, accept=ACCEPT, allow_url=veto)
        page = await asyncio.to_thread(extract_page, result)
        self._pages.put(url, page)
        self._pages.put(page.url, page)
        return page

    async def find_in_page(self, url: str, pattern: str, scope: Scope) -> Matches:
        page = await self.open_page(url, scope)
        count, excerpts = await asyncio.to_thread(find_in_text, page.text, pattern)
        return Matches(page, count, excerpts)

    async def _search_hits(self, text: str, scope: Scope) -> list[SearchHit]:
        key = (" ".join(text.split()).lower(), scope.allowed_domains, scope.country)
        cached = self._hits.get(key)
        if cached is not None:
            return cached
        if not scope.live:
            raise SearchFailed("this query is not in the cache and external_web_access is false")
        assert self._provider is not None, "search on the none provider"
        query = SearchQuery(text, self.settings.max_results, scope.allowed_domains, scope.country)
        try:
            async with asyncio.timeout(self.settings.search_timeout_s):
                raw = await self._provider.search(query)
        except TimeoutError:
            raise SearchFailed(f"{self._provider.name} did not answer within "
                               f"{self.settings.search_timeout_s:g} s") from None
        hits = _kept(raw, scope.allowed_domains)[: self.settings.max_results]
        self._hits.put(key, hits)
        return hits

    async def _page_or_failure(self, url: str, scope: Scope) -> Page | PageFailure:
        try:
            return await self.open_page(url, scope)
        except FetchError as exc:
            log.info("web search page not read: %s", exc.message)
            return PageFailure(url, exc.kind, exc.message)


def _kept(hits: list[SearchHit], domains: tuple[str, ...]) -> list[SearchHit]:
    """http(s) results within the allowed domains, each URL once, in the provider's order."""
    seen: set[str] = set()
    kept = []
    for hit in hits:
        try:
            url = httpx.URL(hit.url)
        except httpx.InvalidURL:
            continue
        if url.scheme in ("http", "https") and domain_allowed(url.host, domains) and hit.url not in seen:
            seen.add(hit.url)
            kept.append(hit)
    return kept


def _domain_veto(domains: tuple[str, ...]) -> Callable[[httpx.URL], str | None]:
    def veto(url: httpx.URL) -> str | None:
        if domain_allowed(url.host, domains):
            return None
        return f"{url.host} is outside the allowed domains ({', '.join(domains)})"
    return veto


def create_service(settings: Settings) -> WebSearchService:
    return WebSearchService(settings.web_search, PROVIDERS[settings.web_search.provider](settings.web_search))
