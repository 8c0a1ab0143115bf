"""The search providers against the stand-in internet (internet.py): SearXNG's, Brave's and Tavily's APIs."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from ddx_omni.core.settings import WebSearchSettings
from ddx_omni.web_search import brave, none, searxng, tavily
from ddx_omni.web_search.provider import SearchFailed, SearchQuery

from . import internet as fake


async def test_searxng_lists_results_as_plain_text(internet: fake.Internet) -> None:
    provider = searxng.create(WebSearchSettings(provider="searxng", url=internet.url("/")))
    hits = await provider.search(SearchQuery("mlx unified memory", 5))
    await provider.aclose()
    assert hits[0].url == internet.url("/pages/mlx.html", host="localhost")
    assert hits[0].snippet == "MLX is an array framework for machine learning on Apple silicon & its unified memory."
    seen = internet.searches()[-1]
    assert seen.query["format"] == ["json"] and seen.query["q"] == ["mlx unified memory"]


@pytest.mark.parametrize(("query", "message"), [
    ("malformed", "searxng answered malformed JSON"),
    ("wrongshape", "searxng answered malformed JSON (results.0.url: Field required)"),
    ("forbidden", "searxng answered HTTP 403 (enable the json format in its settings.yml: search.formats)"),
])
async def test_searxng_failures_are_search_failed(internet: fake.Internet, query: str, message: str) -> None:
    provider = searxng.create(WebSearchSettings(provider="searxng", url=internet.url("")))
    with pytest.raises(SearchFailed) as caught:
        await provider.search(SearchQuery(query, 5))
    await provider.aclose()
    assert str(caught.value).startswith(message)


async def test_searxng_that_is_not_there(internet: fake.Internet) -> None:
    provider = searxng.create(WebSearchSettings(provider="searxng", url="http://127.0.0.1:9"))
    with pytest.raises(SearchFailed, match="searxng could not be reached: ConnectError"):
        await provider.search(SearchQuery("mlx", 5))
    await provider.aclose()


async def test_brave_sends_its_key_and_country(internet: fake.Internet, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = WebSearchSettings(provider="brave", url=internet.url(""), api_key=SecretStr(fake.BRAVE_KEY))
    provider = brave.create(settings)
    hits = await provider.search(SearchQuery("sqlite wal", 3, ("127.0.0.1",), "DE"))
    empty = await provider.search(SearchQuery("nothing at all", 3))
    await provider.aclose()
    seen = internet.searches()[-2]
    assert seen.headers["X-Subscription-Token"] == fake.BRAVE_KEY
    assert seen.query["q"] == ["sqlite wal (site:127.0.0.1)"] and seen.query["count"] == ["3"]
    assert seen.query["country"] == ["de"]
    assert hits[0].title == "Write-Ahead Logging" and empty == []
    assert fake.BRAVE_KEY not in caplog.text and fake.BRAVE_KEY not in repr(settings)


async def test_brave_with_a_wrong_key(internet: fake.Internet) -> None:
    provider = brave.create(WebSearchSettings(provider="brave", url=internet.url(""), api_key=SecretStr("wrong")))
    with pytest.raises(SearchFailed) as caught:
        await provider.search(SearchQuery("mlx", 3))
    await provider.aclose()
    assert str(caught.value) == "brave answered HTTP 401 (check [web_search].api_key)"
    assert "wrong" not in str(caught.value)


async def test_tavily_posts_the_query_with_include_domains(internet: fake.Internet) -> None:
    provider = tavily.create(WebSearchSettings(provider="tavily", url=internet.url(""),
                                               api_key=SecretStr(fake.TAVILY_KEY)))
    hits = await provider.search(SearchQuery("asyncio python", 2, ("localhost",)))
    await provider.aclose()
    seen = internet.requests[-1]
    assert seen.method == "POST" and seen.headers["Authorization"] == f"Bearer {fake.TAVILY_KEY}"
    assert seen.body == {"query": "asyncio python", "max_results": 2, "search_depth": "basic",
                         "include_domains": ["localhost"]}
    assert [h.title for h in hits] == ["asyncio — Asynchronous I/O", "MLX: an array framework for Apple silicon"]


def test_none_provides_nothing() -> None:
    assert none.create(WebSearchSettings()) is None
