"""Fixtures of the web search tests: the stand-in internet (tests/web_search/internet.py) and services over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from ddx_omni.core.settings import WebSearchSettings
from ddx_omni.web_search.service import PROVIDERS, WebSearchService

from . import internet as fake


@pytest.fixture(scope="module")
def internet() -> Iterator[fake.Internet]:
    """The local server that stands in for the internet (127.0.0.1, a free port)."""
    server = fake.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def public_internet() -> Iterator[fake.Internet]:
    """The stand-in internet again, on 127.0.0.2: with allowed_networks = 127.0.0.2/32 it plays a public host,
    so a redirect from it to 127.0.0.1 is one from 'the internet' into this machine."""
    server = fake.start("127.0.0.2")
    yield server
    server.close()


def search_settings(internet: fake.Internet, **overrides: Any) -> WebSearchSettings:
    """searxng on the stand-in internet; loopback pages allowed (the internet here is on 127.0.0.1)."""
    values: dict[str, Any] = {"provider": "searxng", "url": internet.url(""), "allow_private_networks": True,
                              "fetch_timeout_s": 3.0, "search_timeout_s": 3.0}
    return WebSearchSettings(**{**values, **overrides})


@pytest.fixture
async def make_service(internet: fake.Internet) -> AsyncIterator[Callable[..., Any]]:
    """make_service(**settings) → a started WebSearchService over the stand-in internet (stopped afterwards)."""
    started: list[WebSearchService] = []

    async def make(**overrides: Any) -> WebSearchService:
        settings = search_settings(internet, **overrides)
        service = WebSearchService(settings, PROVIDERS[settings.provider](settings))
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()
