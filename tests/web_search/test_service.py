"""WebSearchService over the stand-in internet (internet.py): pages read, domains, cache, failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ddx_omni.core.fetch import FetchError
from ddx_omni.web_search.cache import TtlCache
from ddx_omni.web_search.extract import Page, cut, find_in_text
from ddx_omni.web_search.provider import SearchFailed
from ddx_omni.web_search.service import PageFailure, Scope

from . import internet as fake

Make = Callable[..., Any]


async def test_search_reads_the_top_pages_without_their_clutter(make_service: Make, internet: fake.Internet) -> None:
    service = await make_service(pages_per_search=2)
    outcome = await service.search("mlx unified memory", Scope())
    assert len(outcome.hits) == 3 and len(outcome.pages) == 2
    page = outcome.pages[0]
    assert isinstance(page, Page) and page.title == "MLX: an array framework for Apple silicon"
    assert "the CPU and the GPU share one unified memory pool" in page.text
    for clutter in ("Accept all cookies", "Subscribe to the newsletter", "All rights reserved", "dataLayer",
                    "Ten GPU tricks"):
        assert clutter not in page.text


async def test_allowed_domains_filter_results_and_fetches(make_service: Make, internet: fake.Internet) -> None:
    service = await make_service()
    scope = Scope(allowed_domains=("localhost",))
    outcome = await service.search("sqlite wal concurrency", scope)
    assert [h.url for h in outcome.hits] == [internet.url("/pages/asyncio.html", "localhost"),
                                             internet.url("/pages/mlx.html", "localhost")]
    with pytest.raises(FetchError, match=r"127\.0\.0\.1 is outside the allowed domains \(localhost\)"):
        await service.open_page(internet.url("/pages/sqlite-wal.html"), scope)
    # a redirect out of the allowed domains is refused at that hop
    target = internet.url("/pages/sqlite-wal.html")
    with pytest.raises(FetchError, match="outside the allowed domains"):
        await service.open_page(internet.url(f"/redirect?to={target}", "localhost"), scope)


async def test_results_are_cached_per_query(make_service: Make, internet: fake.Internet) -> None:
    service = await make_service(pages_per_search=1)
    before = len(internet.searches())
    first = await service.search("asyncio python", Scope())
    again = await service.search("  Asyncio   PYTHON ", Scope())
    other = await service.search("asyncio python", Scope(allowed_domains=("localhost",)))
    assert len(internet.searches()) == before + 2  # the respelled query came from the cache
    assert again.hits == first.hits and other.hits
    offline = await service.search("asyncio python", Scope(live=False))
    assert offline.hits == first.hits
    with pytest.raises(SearchFailed, match="external_web_access is false"):
        await service.search("never asked before", Scope(live=False))


async def test_no_cache_with_ttl_zero(make_service: Make, internet: fake.Internet) -> None:
    service = await make_service(cache_ttl_s=0, pages_per_search=0)
    before = len(internet.searches())
    await service.search("mlx", Scope())
    await service.search("mlx", Scope())
    assert len(internet.searches()) == before + 2


async def test_a_page_that_never_answers_is_a_failure_in_the_outcome(make_service: Make) -> None:
    service = await make_service(fetch_timeout_s=0.5, pages_per_search=2)
    outcome = await service.search("hangpage mlx", Scope())
    failure, page = outcome.pages
    assert isinstance(failure, PageFailure) and failure.kind == "timeout" and failure.url.endswith("/hang")
    assert isinstance(page, Page) and "MLX" in page.text


async def test_a_provider_that_never_answers(make_service: Make) -> None:
    service = await make_service(search_timeout_s=0.5)
    with pytest.raises(SearchFailed, match="searxng did not answer"):
        await service.search("slowsearch", Scope())


async def test_other_content_types(make_service: Make, internet: fake.Internet) -> None:
    service = await make_service()
    notes = await service.open_page(internet.url("/notes.txt"), Scope())
    assert notes.text == "Plain notes: WAL means write-ahead log."
    with pytest.raises(FetchError) as caught:
        await service.open_page(internet.url("/doc.pdf"), Scope())
    assert caught.value.kind == "unsupported" and "application/pdf" in caught.value.message
    big = await service.open_page(internet.url("/big"), Scope())
    assert big.truncated and big.text.startswith("lorem ipsum")


async def test_find_in_page(make_service: Make, internet: fake.Internet) -> None:
    service = await make_service()
    found = await service.find_in_page(internet.url("/pages/sqlite-wal.html"), "readers  do NOT block", Scope())
    assert found.count == 1 and "readers do not block writers" in found.excerpts[0]
    assert (await service.find_in_page(internet.url("/pages/sqlite-wal.html"), "bananas", Scope())).count == 0


def test_find_in_text_and_cut() -> None:
    text = "alpha beta gamma. " * 20
    count, excerpts = find_in_text(text, "GAMMA", context=6, limit=2)
    assert count == 20 and excerpts[0] == "…beta gamma. alph…" and len(excerpts) == 2
    assert find_in_text(text, "   ") == (0, [])
    assert cut("one two three four five", 12) == "one two …" and cut("short", 10) == "short"


def test_ttl_cache_expires_and_bounds() -> None:
    now = [0.0]
    cache: TtlCache[int] = TtlCache(10, max_entries=2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)  # b is the least recently used
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    now[0] = 10.0
    assert cache.get("a") is None
