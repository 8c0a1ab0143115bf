"""Fixtures of the Anthropic tests: live servers (mock mode, a scripted engine, the tiny models) and SDK clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import anthropic
from ddx_omni.core.settings import ModelEntry, Settings
from ddx_omni.responses.service import create_service as responses_service
from tests.conftest import build_settings, live_server
from tests.llm.conftest import real_server, tool_model_dir, wait_ready  # noqa: F401  (fixtures, re-exported)
from tests.responses.support import FakeLlm, ScriptedEngine


class RegistryLlm(FakeLlm):
    """The LLM component around one scripted engine, with the registry the models routes list."""

    def __init__(self, engine: ScriptedEngine) -> None:
        super().__init__(engine)
        self.registry = {engine.model_id: ModelEntry(id=engine.model_id, context_window=engine.context_window)}
        self.created = 1_700_000_000


def sdk(url: str, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=kw.pop("api_key", "unused"), timeout=30, max_retries=0, **kw)


@pytest.fixture
def scripted(server_factory: Callable[..., str], make_settings: Callable[..., Settings]
             ) -> Callable[..., tuple[str, ScriptedEngine]]:
    """scripted(engine=None, overrides=None) → (base URL, engine) of a live server answering with that engine."""

    def start(engine: ScriptedEngine | None = None, overrides: dict[str, Any] | None = None) -> tuple[str, Any]:
        engine = engine or ScriptedEngine()
        llm = RegistryLlm(engine)
        settings = make_settings(overrides)
        components = {"llm": llm, "responses": responses_service(settings, llm)}
        return server_factory(overrides, components), engine

    return start


@pytest.fixture(scope="module")
def tool_server(tool_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    settings = build_settings(tmp_path_factory.mktemp("anthropic_tool"),
                              {"llm.use_real_model": True, "llm.model": str(tool_model_dir)})
    with live_server(settings) as url:
        wait_ready(url)
        yield url
