"""The web_search ToolKind driven directly (the turn loop's part played by the test) over the stand-in internet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ddx_omni.core.errors import ApiError
from ddx_omni.core.settings import WebSearchSettings
from ddx_omni.tools.base import ToolRequestContext
from ddx_omni.tools.web_search import TYPES, BoundWebSearch, kinds
from ddx_omni.web_search.citations import SourceBook
from ddx_omni.web_search.service import WebSearchService

from . import internet as fake

Make = Callable[..., Any]


def ctx(include: list[str] | None = None, tool_choice: Any = None) -> ToolRequestContext:
    return ToolRequestContext("resp_test", [], include or [], tool_choice=tool_choice)


async def bound(service: WebSearchService, spec: dict[str, Any] | None = None, **context: Any) -> BoundWebSearch:
    tool = await kinds(service)["web_search"].bind({"type": "web_search", **(spec or {})}, ctx(**context))
    assert isinstance(tool, BoundWebSearch)
    return tool


async def call(tool: BoundWebSearch, name: str, **arguments: Any) -> tuple[dict[str, Any], str, list[str]]:
    """As the turn loop does it: new_item, run (collecting the events), the item and the model's text."""
    events: list[str] = []
    item = tool.new_item(name, arguments)
    assert item["status"] == "in_progress" and item["id"].startswith("ws_")
    text = await tool.run(item, name, arguments, lambda type_, **fields: events.append(type_))
    return item, text, events


async def test_provider_none_is_not_offered_and_cannot_be_forced() -> None:
    service = WebSearchService(WebSearchSettings(), None)
    for name, kind in kinds(service).items():
        assert await kind.bind({"type": name}, ctx()) is None
    with pytest.raises(ApiError) as caught:
        await kinds(service)["web_search_preview"].bind({"type": "web_search_preview"},
                                                        ctx(tool_choice={"type": "web_search_preview"}))
    assert caught.value.status == 400 and caught.value.param == "tool_choice"
    assert "[web_search].provider" in caught.value.message and "DDX_WEB_SEARCH__PROVIDER" in caught.value.message


async def test_a_bad_tool_entry_is_a_400(make_service: Make) -> None:
    service = await make_service()
    with pytest.raises(ApiError) as caught:
        await bound(service, {"search_context_size": "huge"})
    assert caught.value.status == 400 and caught.value.param == "search_context_size"
    for domain in ("http://[oops", "", "two words.com"):
        with pytest.raises(ApiError) as caught:
            await bound(service, {"filters": {"allowed_domains": [domain]}})
        assert caught.value.status == 400 and caught.value.param == "filters.allowed_domains"
    tool = await bound(service, {"filters": {"allowed_domains": ["https://Docs.Example.com/guide", "example.org"]}})
    assert tool._scope.allowed_domains == ("docs.example.com", "example.org")
    assert set(kinds(service)) == set(TYPES)


async def test_search_item_events_and_sources(make_service: Make, internet: fake.Internet) -> None:
    service = await make_service()
    plain = await bound(service)
    item, text, events = await call(plain, "web_search", query="sqlite wal")
    assert item["status"] == "completed" and item["action"] == {"type": "search", "query": "sqlite wal"}
    assert events == ["response.web_search_call.in_progress", "response.web_search_call.searching",
                      "response.web_search_call.completed"]
    assert "[1] Write-Ahead Logging — " + internet.url("/pages/sqlite-wal.html") in text
    assert "readers do not block writers" in text  # the page's own text, not only its snippet
    with_sources = await bound(service, include=["web_search_call.action.sources"])
    item, _text, _events = await call(with_sources, "web_search", query="sqlite wal")
    assert item["action"]["sources"][0] == {"type": "url", "url": internet.url("/pages/sqlite-wal.html")}
    assert len(item["action"]["sources"]) == 3


async def test_context_size_sets_the_budget(make_service: Make) -> None:
    service = await make_service(context_chars_low=400, context_chars_high=20000)
    low = await bound(service, {"search_context_size": "low"})
    high = await bound(service, {"search_context_size": "high"})
    _item, short, _e = await call(low, "web_search", query="mlx memory")
    _item, long, _e = await call(high, "web_search", query="mlx memory")
    assert len(short) < 700 < len(long)
    assert "unified memory pool" in long


async def test_failures_end_the_call_failed_and_tell_the_model(make_service: Make, internet: fake.Internet) -> None:
    service = await make_service(fetch_timeout_s=0.5)
    tool = await bound(service)
    item, text, events = await call(tool, "web_search", query="malformed")
    assert item["status"] == "failed" and item["error"].startswith("searxng answered malformed JSON")
    assert text.startswith("web_search failed: searxng answered malformed JSON")
    assert events[-1] == "response.web_search_call.completed"  # the end of the call; its status says how
    item, text, _e = await call(tool, "open_page", url=internet.url("/hang"))
    assert item["status"] == "failed" and "did not answer within 0.5 s" in item["error"]
    assert item["action"] == {"type": "open_page", "url": internet.url("/hang")}
    item, text, _e = await call(tool, "web_search", query="   ")
    assert item["status"] == "failed" and "non-empty string" in text


async def test_open_and_find_then_cite(make_service: Make, internet: fake.Internet) -> None:
    service = await make_service(pages_per_search=0)
    tool = await bound(service)
    await call(tool, "web_search", query="asyncio python")
    page_url = internet.url("/pages/sqlite-wal.html")
    item, text, _e = await call(tool, "find_in_page", url=page_url, pattern="checkpoint")
    assert item["action"] == {"type": "find_in_page", "url": page_url, "pattern": "checkpoint"}
    assert '"checkpoint" found 1 times' in text and "A checkpoint moves the WAL file" in text
    number = text[1:text.index("]")]
    answer = f"Python has asyncio [1]. WAL checkpoints move changes back [{number}]."
    notes = tool.annotate(answer)
    assert [answer[a["start_index"]:a["end_index"]] for a in notes] == ["[1]", f"[{number}]"]
    assert notes[1]["url"] == page_url and notes[1]["title"] == "Write-Ahead Logging"


def test_citation_forms() -> None:
    book = SourceBook()
    one = book.add("https://Example.com/a/", "Provider title")
    book.add("https://example.com/a", "Page title", better_title=True)
    two = book.add("https://docs.test/b", "B")
    assert (one.number, two.number, one.title) == (1, 2, "Page title")
    text = ("Fact one [1, 2]. See [the docs](https://docs.test/b) and https://example.com/a/. "
            "Unknown [7] and [x](https://elsewhere.test/) and [1](https://docs.test/b#frag).")
    spans = [(text[a["start_index"]:a["end_index"]], a["url"]) for a in book.annotate(text)]
    assert spans == [("[1, 2]", "https://Example.com/a/"), ("[1, 2]", "https://docs.test/b"),
                     ("[the docs](https://docs.test/b)", "https://docs.test/b"),
                     ("https://example.com/a/", "https://Example.com/a/"),
                     ("[1](https://docs.test/b#frag)", "https://docs.test/b")]
