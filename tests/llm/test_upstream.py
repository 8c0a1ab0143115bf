"""Upstream model servers: registry entries with `url`s answered by another ddx-omni (real mode) and by
mlx_lm.server, both on the tiny model; balancing, failover when one is down, and the upstream key kept inside."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import build_settings, free_port, live_server, wait_for

from .conftest import wait_ready

UPSTREAM_KEY = "k-upstream-secret"
GREEDY = {"temperature": 0, "max_tokens": 8}
MESSAGES = [{"role": "user", "content": "Say something"}]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream_omni(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another ddx-omni in real mode on the tiny model, behind its own key."""
    settings = build_settings(tmp_path_factory.mktemp("upstream"), {
        "llm.use_real_model": True, "llm.model": str(tiny_model_dir), "auth.api_keys": [UPSTREAM_KEY]})
    with live_server(settings) as url:
        wait_ready(url)
        yield url


@contextlib.contextmanager
def mlx_lm_server(model_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lm", "server", "--model", str(model_dir), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
        return False

    try:
        wait_for(up, timeout=120, interval=0.3)
        yield url, proc
    finally:
        proc.kill()
        proc.wait(30)


def gateway(tmp_path: Path, urls: list[str], model_dir: Path | None = None) -> contextlib.AbstractContextManager[str]:
    entry = {"id": "remote-tiny", "url": urls, "api_key": UPSTREAM_KEY, "context_window": 4096}
    if model_dir is not None:
        entry["upstream_model"] = str(model_dir)
    default = {"id": "mlx-community/Qwen3-4B-Instruct-2507-4bit"}
    return live_server(build_settings(tmp_path, {"llm.models": [default, entry], "auth.api_keys": ["k-gw"]}))


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, timeout=120, max_retries=0)


def test_chat_and_responses_stream_through_another_ddx_omni(upstream_omni: str, tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    direct = sdk(upstream_omni, UPSTREAM_KEY).chat.completions.create(model=str(tiny_model_dir), messages=MESSAGES,
                                                                       **GREEDY)
    with gateway(tmp_path, [f"{upstream_omni}/v1"], tiny_model_dir) as url:
        client = sdk(url, "k-gw")
        plain = client.chat.completions.create(model="remote-tiny", messages=MESSAGES, **GREEDY)
        chunks = list(client.chat.completions.create(model="remote-tiny", messages=MESSAGES, stream=True,
                                                     stream_options={"include_usage": True}, **GREEDY))
        response = client.responses.create(model="remote-tiny", input="Say something", max_output_tokens=8,
                                           temperature=0)
        models = httpx.get(f"{url}/v1/models", timeout=10).text
        health = httpx.get(f"{url}/health", timeout=10).json()["components"]["llm"]
    assert plain.choices[0].message.content == direct.choices[0].message.content
    assert plain.model == "remote-tiny" and plain.usage.prompt_tokens == direct.usage.prompt_tokens
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == direct.choices[0].message.content and chunks[-1].usage.completion_tokens > 0
    assert response.status == "incomplete" and response.usage.input_tokens > 0 and response.output_text
    assert UPSTREAM_KEY not in models + str(health) and f"{upstream_omni}" not in models
    assert health["upstreams"]["remote-tiny"][0]["state"] == "up"


def test_mlx_lm_server_upstream_gives_its_own_answer(tiny_model_dir: Path, tmp_path: Path) -> None:
    with mlx_lm_server(tiny_model_dir) as (upstream, _):
        direct = sdk(upstream, "unused").chat.completions.create(model=str(tiny_model_dir), messages=MESSAGES,
                                                                 **GREEDY)
        with gateway(tmp_path, [f"{upstream}/v1"], tiny_model_dir) as url:
            through = sdk(url, "k-gw").chat.completions.create(model="remote-tiny", messages=MESSAGES, **GREEDY)
    assert through.choices[0].message.content == direct.choices[0].message.content
    assert through.usage.completion_tokens == direct.usage.completion_tokens


def test_failover_when_an_upstream_dies_and_circuit_shown_in_health(tiny_model_dir: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with (mlx_lm_server(tiny_model_dir) as (first, first_proc), mlx_lm_server(tiny_model_dir) as (second, _),
          gateway(tmp_path, [dead, f"{first}/v1", f"{second}/v1"], tiny_model_dir) as url):
        client = sdk(url, "k-gw")
        before = [client.chat.completions.create(model="remote-tiny", messages=MESSAGES, **GREEDY)
                  for _ in range(3)]
        os.kill(first_proc.pid, signal.SIGKILL)
        first_proc.wait(30)
        after = [client.chat.completions.create(model="remote-tiny", messages=MESSAGES, **GREEDY)
                 for _ in range(4)]
        states = {t["url"]: t for t in httpx.get(f"{url}/health", timeout=10).json()[
            "components"]["llm"]["upstreams"]["remote-tiny"]}
    texts = {r.choices[0].message.content for r in before + after}
    assert len(texts) == 1  # every request answered, by whichever upstream was up
    assert states[dead]["state"] == "down" and states[dead]["last_error"]
    assert states[f"{first}/v1"]["state"] == "down" and states[f"{second}/v1"]["state"] == "up"


def test_all_upstreams_down_is_503_and_upstream_refusal_passes_through(upstream_omni: str, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with gateway(tmp_path, [dead]) as url, pytest.raises(openai.APIStatusError) as down:
        sdk(url, "k-gw").chat.completions.create(model="remote-tiny", messages=MESSAGES, **GREEDY)
    assert down.value.status_code == 503 and down.value.body["code"] == "model_unavailable"
    # the upstream does not know this model name
    with gateway(tmp_path, [f"{upstream_omni}/v1"]) as url, pytest.raises(openai.NotFoundError) as refused:
        sdk(url, "k-gw").chat.completions.create(model="remote-tiny", messages=MESSAGES, **GREEDY)
    assert "upstream" in refused.value.message and UPSTREAM_KEY not in str(refused.value.body)
