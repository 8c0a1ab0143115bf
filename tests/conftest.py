"""Shared fixtures: settings built in isolation (no ./config.toml, no DDX_* environment) and a live server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from ddx_omni.app import create_app
from ddx_omni.core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def build_settings(tmp_path: Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults + dotted overrides, with the database under tmp_path; ignores ./config.toml and the env."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    base = {"responses.db_path": str(tmp_path / "responses.db"),
            "code_interpreter.data_dir": str(tmp_path / "containers")}
    return load_settings(empty, {**base, **(overrides or {})}, environ={})


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    return lambda overrides=None: build_settings(tmp_path, overrides)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(settings: Settings, components: dict[str, Any] | None = None) -> Iterator[str]:
    """A real uvicorn server on a free loopback port in a thread; yields its base URL (http://127.0.0.1:P)."""
    port = free_port()
    app = create_app(settings, components)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           ws_max_size=16 * 1024 * 1024, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """server_factory(overrides=None, components=None) → base URL of a live server (stopped after the test)."""
    with contextlib.ExitStack() as stack:
        yield lambda overrides=None, components=None: stack.enter_context(
            live_server(build_settings(tmp_path, overrides), components))


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def get_json(url: str, **kw: Any) -> Any:
    return httpx.get(url, timeout=10, **kw).json()


def _build_model(out_dir: Path, seed: int, preset: str = "tiny") -> Path:
    """scripts/make_model.py's build_model (scripts/ is not a package, so it is loaded by path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ddx_make_model", REPO / "scripts" / "make_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model(out_dir, preset=preset, seed=seed)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real MLX chat model (random weights, tool-calling template), built once per session."""
    return _build_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model with other weights (hot swap tests)."""
    return _build_model(tmp_path_factory.mktemp("tiny_model_b"), seed=1)
