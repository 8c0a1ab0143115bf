"""The one interface a search backend implements, and what its modules share (JSON over HTTP, domain rules).

Adding a provider is one module with a `create(settings) -> SearchProvider` and one line in service.PROVIDERS.
A provider's failures (HTTP errors, timeouts, malformed answers) are raised as SearchFailed, whose message
names the provider and what went wrong but never the API key.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

_TAG = re.compile(r"<[^>]+>")
ModelT = TypeVar("ModelT", bound=BaseModel)


class SearchFailed(Exception):
    """The provider gave no usable answer."""


@dataclass(frozen=True)
class SearchHit:
    url: str
    title: str
    snippet: str


@dataclass(frozen=True)
class SearchQuery:
    text: str
    max_results: int
    allowed_domains: tuple[str, ...] = ()  # empty: any domain; a provider may pass them on as a hint
    country: str | None = None  # ISO 3166 two-letter code from the request's user_location


class ResultJson(BaseModel):
    """A result as SearXNG and Tavily both write it."""

    url: str
    title: str | None = ""
    content: str | None = ""


class HttpProvider:
    """What the HTTP providers share: one client for their API, closed at stop."""

    name = "provider"

    def __init__(self, base_url: str, timeout_s: float, headers: dict[str, str]) -> None:
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s, headers=headers)

    async def aclose(self) -> None:
        await self._client.aclose()


class SearchProvider(Protocol):
    name: str

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        """The provider's results in its order, at most query.max_results. Raises SearchFailed."""
        ...

    async def aclose(self) -> None: ...


def plain(text: str | None) -> str:
    """Providers' snippets may carry markup (<strong>…</strong>, &amp;): the model reads plain text."""
    return " ".join(html.unescape(_TAG.sub("", text or "")).split())


def domain_allowed(host: str, domains: tuple[str, ...]) -> bool:
    """OpenAI's rule: a listed domain allows itself and its subdomains; an empty list allows everything."""
    if not domains:
        return True
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


def normalise_domain(value: str) -> str:
    """`https://Docs.Python.org/3/` or `docs.python.org` → `docs.python.org`."""
    value = value.strip().lower()
    host = httpx.URL(value).host if "://" in value else value.split("/", 1)[0]
    return host.rstrip(".")


async def request_json(client: httpx.AsyncClient, provider: str, model: type[ModelT], method: str, url: str,
                       **kwargs: Any) -> ModelT:
    """One API call whose answer must be JSON of `model`'s shape; every failure becomes SearchFailed."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise SearchFailed(f"{provider} did not answer in time") from None
    except httpx.HTTPError as exc:
        raise SearchFailed(f"{provider} could not be reached: {type(exc).__name__}") from None
    if response.status_code >= 400:
        raise SearchFailed(f"{provider} answered HTTP {response.status_code}{_hint(provider, response.status_code)}")
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        raise SearchFailed(f"{provider} answered malformed JSON ({where}: {first['msg']})") from None


def _hint(provider: str, status: int) -> str:
    if provider == "searxng" and status == 403:
        return " (enable the json format in its settings.yml: search.formats)"
    if status in (401, 403):
        return " (check [web_search].api_key)"
    if status == 429:
        return " (rate limited)"
    return ""
