"""Memory: a hot swap gives the old model's buffers back (RSS), and `[llm].idle_unload_s` unloads an unused model."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import _build_model, wait_for

from .conftest import wait_ready

pytestmark = pytest.mark.slow
HI = [{"role": "user", "content": "Hello there"}]


def rss_bytes() -> int:
    """This process's resident set: the in-process test server's model lives here."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def chat(url: str, max_tokens: int = 8) -> openai.types.chat.ChatCompletion:
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=60)
    return sdk.chat.completions.create(model=None, messages=HI, max_tokens=max_tokens)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def medium_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_model(tmp_path_factory.mktemp("medium_model"), seed=0, preset="medium")


def weights_bytes(model_dir: Path) -> int:
    return sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))


def test_hot_swap_releases_the_old_models_memory(server_with, medium_model_dir: Path, tiny_model_dir: Path) -> None:
    url = server_with({"llm.use_real_model": True, "llm.model": "medium", "llm.swap_drain_s": 0.2,
                       "llm.models": [{"id": "medium", "path": str(medium_model_dir)},
                                      {"id": "tiny", "path": str(tiny_model_dir)}]})
    wait_ready(url)
    chat(url, max_tokens=16)  # weights, KV cache and prompt cache all in use
    with_medium = rss_bytes()
    assert httpx.post(f"{url}/v1/models/load", json={"model_id": "tiny"}, timeout=60).status_code == 200
    chat(url)
    with_tiny = rss_bytes()
    size = weights_bytes(medium_model_dir)
    # most of the medium model's memory is back with the system (MLX's buffer pool cleared, no reference kept)
    assert with_medium - with_tiny > size * 0.7, (with_medium >> 20, with_tiny >> 20, size >> 20)


def test_idle_unload_frees_the_model_and_the_next_request_reloads_it(server_with, tiny_model_dir: Path) -> None:
    url = server_with({"llm.use_real_model": True, "llm.model": str(tiny_model_dir), "llm.idle_unload_s": 0.4})
    wait_ready(url)
    first = chat(url)
    llm = lambda: httpx.get(f"{url}/health", timeout=5).json()["components"]["llm"]  # noqa: E731
    wait_for(lambda: llm()["model_state"] == "unloaded", 10)
    assert llm()["state"] == "ready"  # ready to serve: the next request loads the model again
    assert httpx.get(f"{url}/v1/models/current", timeout=5).json()["loaded"] is False
    again = chat(url)
    assert again.choices[0].message.content and again.model == first.model
    assert llm()["model_state"] == "ready"
