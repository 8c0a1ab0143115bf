"""The fast CPU path: `serve` preloads OpenBLAS when installed and computes a bfloat16 checkpoint in float32."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from ddx_omni.llm import compute
from tests.conftest import free_port

from .conftest import wait_ready


@pytest.fixture(scope="module")
def bf16_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as the hub ships most checkpoints: bfloat16 weights."""
    import mlx.core as mx

    out = tmp_path_factory.mktemp("bf16") / "tiny-bf16"
    shutil.copytree(tiny_model_dir, out)
    weights = mx.load(str(out / "model.safetensors"))
    mx.save_safetensors(str(out / "model.safetensors"), {k: v.astype(mx.bfloat16) for k, v in weights.items()},
                        metadata={"format": "mlx"})
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    return out


def serve_health(model_dir: Path, tmp_path: Path, **env: str) -> tuple[dict, str]:
    """Run `ddx-omni serve --real` on the model, wait until it is loaded: (/health llm component, its log)."""
    port = free_port()
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("DDX_") and k != "LD_PRELOAD"},
               "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), "DDX_STT__ENGINE": "sphinx", **env}
    proc = subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--real", "--model", str(model_dir),
                             "--port", str(port)], cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            try:
                health = wait_ready(f"http://127.0.0.1:{port}")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        answer = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0).chat.completions \
            .create(model=None, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)  # type: ignore[arg-type]
        assert answer.usage.completion_tokens >= 1  # the cast model generates
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    return health, out


def test_serve_takes_the_fast_cpu_path_and_health_says_so(bf16_model_dir: Path, tmp_path: Path) -> None:
    health, log = serve_health(bf16_model_dir, tmp_path)
    assert health["model_state"] == "ready", health
    got = health["compute"]
    assert got["backend"] == "cpu" and got["dtype"] == "float32" and got["checkpoint_dtype"] == "bfloat16"
    assert "model computes in float32 (checkpoint bfloat16)" in log
    library = compute.find_openblas()
    if library is None:
        # CI installs libopenblas0-pthread (.ci/run): there the fast BLAS path must be taken
        assert not os.environ.get("CI_REQUIRE_OPENBLAS"), "OpenBLAS should be installed here"
        assert got["blas"] == "bundled", got
    else:
        assert got["blas"] == "openblas" and got["blas_path"] == library, got
        assert f"MLX computes on the cpu with openblas BLAS ({library})" in log


def test_native_keeps_the_checkpoint_dtype_and_bundled_keeps_mlx_blas(bf16_model_dir: Path, tmp_path: Path) -> None:
    health, _ = serve_health(bf16_model_dir, tmp_path, DDX_LLM__CPU_DTYPE="native", DDX_LLM__CPU_BLAS="bundled")
    got = health["compute"]
    assert got["dtype"] == got["checkpoint_dtype"] == "bfloat16" and got["blas"] == "bundled", got


def test_auto_keeps_16_bit_weights_when_float32_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlx.core as mx
    import mlx.nn as nn

    layer = nn.Linear(256, 256)
    layer.set_dtype(mx.bfloat16)
    monkeypatch.setattr(compute, "_available_bytes", lambda: 1 << 20)  # 1 MiB free: what the check reads
    native, dtype, why = compute.choose_dtype(layer, "auto", on_cpu=True)
    assert (native, dtype) == ("bfloat16", "bfloat16") and "MiB available" in why
    assert compute.choose_dtype(layer, "float32", on_cpu=True)[1] == "float32"  # forced: cast regardless
    monkeypatch.setattr(compute, "_available_bytes", lambda: 64 << 30)
    assert compute.choose_dtype(layer, "auto", on_cpu=True)[1] == "float32"
