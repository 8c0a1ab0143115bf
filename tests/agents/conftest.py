"""Agent CLIs against a real `ddx-omni serve` process in scripted mock mode.

Claude Code (`claude`) and Codex (`codex`) come from npm (`.ci/run` installs them). A missing CLI fails the test
with the install command: these tests exist to prove the agents run unmodified, and a skip would hide that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

KEY = "agent-test-key"
NPM = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex"}


@dataclass
class Server:
    url: str
    log: Path


def cli(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: install it with `npm install -g {NPM[name]}` (.ci/run does)")
    return path


def clean_env(home: Path) -> dict[str, str]:
    """No DDX_*, ANTHROPIC_* or OPENAI_* settings of the developer's shell; a private HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DDX_", "ANTHROPIC_", "OPENAI_", "CODEX_"))}
    return {**env, "HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "XDG_CONFIG_HOME": str(home / "config")}


def _wait_up(url: str, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "ddx-omni did not start"
        time.sleep(0.2)


@pytest.fixture
def ddx(tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], Server]]:
    """ddx(rules) → a `ddx-omni serve` subprocess whose mock mode follows `rules` (the mock script)."""
    procs: list[subprocess.Popen[str]] = []

    def start(rules: list[dict[str, Any]]) -> Server:
        script, log, port = tmp_path / "script.json", tmp_path / "ddx-omni.log", free_port()
        script.write_text(json.dumps(rules))
        env = {**clean_env(tmp_path / "server-home"), "DDX_LLM__MOCK_SCRIPT": str(script), "DDX_LLM_API_KEYS": KEY,
               "DDX_STT__ENGINE": "sphinx"}
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--port", str(port)],
                                    cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, proc, log)
        return Server(url, log)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
