"""Fixtures of the Responses tests: a live server around a given engine, and an openai SDK client for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from ddx_omni.core.settings import Settings
from ddx_omni.responses.service import create_service

from .support import FakeLlm, ScriptedEngine


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=30, max_retries=0)


@pytest.fixture
def storage_url(each_store: str) -> str:
    """Every Responses test runs on both stores: SQLite (the default) and a fresh PostgreSQL database."""
    return each_store


@pytest.fixture
def serve(server_factory: Callable[..., str], make_settings: Callable[..., Settings]) -> Callable[..., str]:
    """serve(engine=None, overrides=None, tools=None) → base URL of a live server whose responses run on
    `engine` (a ScriptedEngine by default), with the built-in tool kinds `tools` ({type: ToolKind})."""

    def start(engine: Any = None, overrides: dict[str, Any] | None = None, tools: dict[str, Any] | None = None) -> str:
        llm = FakeLlm(engine if engine is not None else ScriptedEngine())
        service = create_service(make_settings(overrides), llm, tools)
        return server_factory(overrides, {"llm": llm, "responses": service})

    return start
