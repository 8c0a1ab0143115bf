"""The Responses `web_search` tool (also `web_search_preview`): search, open_page and find_in_page as
`web_search_call` items, and url_citation annotations on the answer (web_search/citations.py says how).

The model sees three functions; each call is one `web_search_call` item whose `action` is the OpenAI shape
(`search` with `query`, plus `sources` only when the request includes `web_search_call.action.sources`;
`open_page` with `url`; `find_in_page` with `url` and `pattern`). Events: `response.web_search_call.
in_progress`, `.searching`, `.completed` — the last ends every call, as OpenAI has no `.failed` event for it:
a failed call's item ends with status `failed` and an `error` message, and the model is told what went wrong.
With provider `none` the tool is not offered.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.fetch import FetchError
from ..core.settings import WebSearchSettings
from ..responses.schemas import bad_request, new_id
from ..web_search.citations import SourceBook
from ..web_search.provider import SearchFailed, normalise_domain
from ..web_search.render import render_matches, render_page, render_search
from ..web_search.service import Scope, WebSearchService
from .base import BoundTool, Emit, FunctionSpec, ReplayedCall, ToolKind, ToolRequestContext

log = logging.getLogger("ddx_omni.web_search")

TYPES = ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11")
_DOMAIN = re.compile(r"[\w-]+(\.[\w-]+)*")  # names (IDN too) and IPv4 literals; no spaces, ports or paths
SOURCES_INCLUDE = "web_search_call.action.sources"
_URL = {"type": "string", "description": "An http(s) URL, usually one of the search results."}
FUNCTIONS = [
    FunctionSpec("web_search", "Search the web. Returns numbered results [n] with the readable text of the top "
                 "pages; cite what you use as [n].",
                 {"type": "object", "properties": {"query": {"type": "string", "description": "What to search for."}},
                  "required": ["query"]}),
    FunctionSpec("open_page", "Read a web page in full (usually a search result).",
                 {"type": "object", "properties": {"url": _URL}, "required": ["url"]}),
    FunctionSpec("find_in_page", "Find a word or phrase inside a web page; returns the passages around it.",
                 {"type": "object", "properties": {"url": _URL, "pattern": {"type": "string",
                                                                           "description": "Text to look for."}},
                  "required": ["url", "pattern"]}),
]


class BadArguments(Exception):
    """The model called a function with arguments it cannot run with."""


class _Filters(BaseModel):
    allowed_domains: list[str] | None = None


class _Location(BaseModel):
    type: Literal["approximate"] | None = None
    country: str | None = None
    city: str | None = None
    region: str | None = None
    timezone: str | None = None


class _Spec(BaseModel):
    """The request's tool entry (OpenAI's WebSearchTool / WebSearchPreviewTool); unknown keys are tolerated."""

    model_config = ConfigDict(extra="allow")
    type: str
    filters: _Filters | None = None
    search_context_size: Literal["low", "medium", "high"] | None = None
    user_location: _Location | None = None
    external_web_access: bool | None = None


class WebSearchKind:
    """Registered under every accepted `type` name; its service is a component of its own, started by the app."""

    item_types = ("web_search_call",)

    def __init__(self, service: WebSearchService, type_name: str = "web_search") -> None:
        self.type = type_name
        self._service = service

    async def bind(self, spec: dict[str, Any], ctx: ToolRequestContext) -> BoundTool | None:
        if not self._service.available:
            if _forced(ctx.tool_choice):
                raise bad_request("tool_choice forces web_search, but this server has no web search provider. "
                                  "Configure one: [web_search].provider = searxng (with [web_search].url), brave or "
                                  "tavily (with [web_search].api_key), or DDX_WEB_SEARCH__PROVIDER; or remove "
                                  "tool_choice.", "tool_choice", code="web_search_unavailable")
            return None  # offered but not configured: the model is not shown it (Codex offers it every turn)
        try:
            parsed = _Spec.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise bad_request(f"{self.type} tool: {where}: {first['msg']}", where) from None
        return BoundWebSearch(self._service, parsed, _scope(parsed), SOURCES_INCLUDE in ctx.include)

    def replay(self, items: list[dict[str, Any]]) -> dict[str, ReplayedCall]:
        """Earlier web_search_call items as the calls the model made. What they returned is not stored (the
        item has no field for it), so the model reads what is kept: the sources, or the failure."""
        return {item["id"]: _replayed(item) for item in items
                if item.get("type") == "web_search_call" and item.get("id") and item.get("status") != "in_progress"}


def _forced(tool_choice: Any) -> bool:
    return isinstance(tool_choice, dict) and tool_choice.get("type") in TYPES


def _scope(spec: _Spec) -> Scope:
    domains = tuple(dict.fromkeys(_domain(d) for d in (spec.filters.allowed_domains or []))) if spec.filters else ()
    country = spec.user_location.country if spec.user_location else None
    return Scope(domains, country.upper() if country else None, spec.external_web_access is not False)


def _domain(value: str) -> str:
    try:
        domain = normalise_domain(value)
    except httpx.InvalidURL:
        domain = ""
    if not _DOMAIN.fullmatch(domain):
        raise bad_request(f"filters.allowed_domains: {value!r} is not a domain (e.g. \"example.com\")",
                          "filters.allowed_domains")
    return domain


def _budget(settings: WebSearchSettings, size: str | None) -> int:
    return {"low": settings.context_chars_low, "high": settings.context_chars_high}.get(
        size or "medium", settings.context_chars_medium)


class BoundWebSearch:
    """One request's web_search entry: its scope, its budget, and the sources its calls showed the model."""

    def __init__(self, service: WebSearchService, spec: _Spec, scope: Scope, include_sources: bool) -> None:
        self._service = service
        self._scope = scope
        self._budget = _budget(service.settings, spec.search_context_size)
        self._include_sources = include_sources
        self._book = SourceBook()

    def functions(self) -> list[FunctionSpec]:
        return list(FUNCTIONS)

    def new_item(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"id": new_id("ws"), "type": "web_search_call", "status": "in_progress",
                "action": _action(name, arguments)}

    async def run(self, item: dict[str, Any], name: str, arguments: dict[str, Any], emit: Emit) -> str:
        emit("response.web_search_call.in_progress")
        item["status"] = "searching"
        emit("response.web_search_call.searching")
        try:
            text = await self._call(item, name, arguments)
            item["status"] = "completed"
        except (SearchFailed, FetchError, BadArguments) as exc:
            text = _failed(item, name, exc.message if isinstance(exc, FetchError) else str(exc))
        except Exception:  # the turn must go on: a bug here fails this call, not the response
            log.exception("web search %s failed", name)
            text = _failed(item, name, "internal error")
        # OpenAI has no .failed event for web search: .completed ends every call, the item's status tells how
        emit("response.web_search_call.completed")
        return text

    async def _call(self, item: dict[str, Any], name: str, arguments: dict[str, Any]) -> str:
        if name == "web_search":
            outcome = await self._service.search(_text(arguments, "query"), self._scope)
            if self._include_sources:
                item["action"]["sources"] = [{"type": "url", "url": hit.url} for hit in outcome.hits]
            return render_search(outcome, self._book, self._budget)
        url = _text(arguments, "url")
        if name == "open_page":
            return render_page(await self._service.open_page(url, self._scope), url, self._book, self._budget)
        if name == "find_in_page":
            pattern = _text(arguments, "pattern")
            matches = await self._service.find_in_page(url, pattern, self._scope)
            return render_matches(matches, url, pattern, self._book, self._budget)
        raise BadArguments(f"unknown web search function {name}")

    def annotate(self, text: str) -> list[dict[str, Any]]:
        return self._book.annotate(text)


def _replayed(item: dict[str, Any]) -> ReplayedCall:
    action = dict(item.get("action") or {})
    kind = action.pop("type", "search")
    sources = action.pop("sources", None) or []
    name = {"search": "web_search", "open_page": "open_page", "find_in_page": "find_in_page"}.get(kind, "web_search")
    if item.get("status") == "failed":
        output = f"{name} failed: {item.get('error') or 'unknown error'}"
    elif sources:
        output = "Results (earlier turn; open_page to read one again):\n" + "\n".join(s["url"] for s in sources)
    else:
        output = "(What this call returned in an earlier turn is not kept; call it again to read it.)"
    return ReplayedCall(name, json.dumps(action), output)


def _failed(item: dict[str, Any], name: str, message: str) -> str:
    item["status"], item["error"] = "failed", message
    return f"{name} failed: {message}"


def _action(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if name == "open_page":
        return {"type": "open_page", "url": str(arguments.get("url", ""))}
    if name == "find_in_page":
        return {"type": "find_in_page", "url": str(arguments.get("url", "")),
                "pattern": str(arguments.get("pattern", ""))}
    return {"type": "search", "query": str(arguments.get("query", ""))}


def _text(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadArguments(f"the argument {key!r} must be a non-empty string")
    return value.strip()


def kinds(service: WebSearchService) -> dict[str, ToolKind]:
    """Every accepted tool type (web_search, web_search_preview and their dated names) → the one kind."""
    kind = WebSearchKind(service)
    return dict.fromkeys(TYPES, kind)
