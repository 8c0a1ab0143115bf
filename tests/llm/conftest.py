"""Fixtures of the chat tests: a real-mode server on the tiny model, shared by a module's tests."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import _build_model, build_settings, live_server, wait_for

EOS_BIAS = -100.0  # pushes <|im_end|> out of reach, so generations run to max_tokens


def wait_ready(url: str, timeout: float = 60) -> dict[str, Any]:
    def settled() -> bool:
        return httpx.get(f"{url}/health", timeout=5).json()["components"]["llm"]["state"] != "loading"

    wait_for(settled, timeout)
    return httpx.get(f"{url}/health", timeout=5).json()["components"]["llm"]


@pytest.fixture(scope="module")
def real_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = build_settings(tmp_path_factory.mktemp("llm_real"),
                              {"llm.use_real_model": True, "llm.model": str(tiny_model_dir)})
    with live_server(settings) as url:
        wait_ready(url)
        yield url


@pytest.fixture(scope="module")
def client(real_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{real_server}/v1", api_key="unused", timeout=60, max_retries=0)


@pytest.fixture
def eos_id(tiny_model_dir: Path) -> int:
    import json

    return json.loads((tiny_model_dir / "config.json").read_text())["eos_token_id"]


@pytest.fixture
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture
def server_with(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], str]]:
    """A fresh server per call with the given overrides (for tests that change the loaded model)."""
    with contextlib.ExitStack() as stack:
        yield lambda overrides: stack.enter_context(live_server(build_settings(tmp_path, overrides)))


@pytest.fixture(scope="session")
def tool_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model scripted to answer every prompt with a short reasoning and one get_weather(city=Berlin) call."""
    return _build_model(tmp_path_factory.mktemp("tool_model"), seed=0, preset="tool")


@pytest.fixture(scope="module")
def tool_client(tool_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    settings = build_settings(tmp_path_factory.mktemp("llm_tool"),
                              {"llm.use_real_model": True, "llm.model": str(tool_model_dir)})
    with live_server(settings) as url:
        wait_ready(url)
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=60, max_retries=0)


def start_long_stream(url: str, eos_id: int, max_tokens: int = 4000, messages: list[dict[str, Any]] | None = None,
                      stop: threading.Event | None = None) -> tuple[threading.Thread, list[dict], threading.Event]:
    """A long greedy stream read in a thread: (thread, its SSE events as they come, set at the first). Setting
    `stop` makes the reader hang up."""
    events: list[dict] = []
    first_chunk = threading.Event()

    def read() -> None:
        body = {"messages": messages or [{"role": "user", "content": "Hello there"}], "max_tokens": max_tokens,
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
                "logit_bias": {str(eos_id): EOS_BIAS}}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(json.loads(line[6:]))
                    first_chunk.set()
                if stop is not None and stop.is_set():
                    return

    thread = threading.Thread(target=read)
    thread.start()
    return thread, events, first_chunk
