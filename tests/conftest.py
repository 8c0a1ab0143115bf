"""Shared fixtures: settings built in isolation (no ./config.toml, no DDX_* environment) and a live server."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from ddx_omni.app import create_app
from ddx_omni.core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def build_settings(tmp_path: Path, overrides: dict[str, Any] | None = None, storage_url: str = "") -> Settings:
    """Defaults + dotted overrides, with the database under tmp_path (or at `storage_url`); ignores
    ./config.toml and the env."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    base = {"responses.db_path": str(tmp_path / "responses.db"), "storage.url": storage_url,
            "code_interpreter.data_dir": str(tmp_path / "containers"),
            "files.db_path": str(tmp_path / "files.db"), "files.dir": str(tmp_path / "files")}
    return load_settings(empty, {**base, **(overrides or {})}, environ={})


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One PostgreSQL server for the whole session (tests/postgres.py); each test gets its own database.
    Not installed: the test is skipped, except in CI (CI_REQUIRE_POSTGRES=1), where that is a failure."""
    from tests.postgres import PostgresServer, pg_bin

    if pg_bin("initdb") is None:
        if os.environ.get("CI_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required here (CI_REQUIRE_POSTGRES=1) but initdb is not installed")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


_databases = itertools.count()


@pytest.fixture
def storage_url() -> str:
    """The [storage].url of the test's servers: "" (SQLite under tmp_path) unless a directory overrides it."""
    return ""


@pytest.fixture(params=["sqlite", "postgresql"])
def each_store(request: pytest.FixtureRequest) -> str:
    """For the directories whose tests run on both stores (their `storage_url` returns this): "" (SQLite, the
    default), then a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return ""
    return fresh_database(request.getfixturevalue("postgres"))


def fresh_database(server: Any) -> str:
    """A new, empty database on the session's PostgreSQL server → its URL."""
    return server.create_database(f"t{os.getpid()}_{next(_databases)}")


@pytest.fixture
def make_settings(tmp_path: Path, storage_url: str) -> Callable[..., Settings]:
    return lambda overrides=None: build_settings(tmp_path, overrides, storage_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(settings: Settings, components: dict[str, Any] | None = None) -> Iterator[str]:
    """A real uvicorn server on a free loopback port in a thread; yields its base URL (http://127.0.0.1:P)."""
    port = free_port()
    settings.server.port = port  # where the other replicas reach it
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
def server_factory(tmp_path: Path, storage_url: str) -> Iterator[Callable[..., str]]:
    """server_factory(overrides=None, components=None) → base URL of a live server (stopped after the test)."""
    with contextlib.ExitStack() as stack:
        yield lambda overrides=None, components=None: stack.enter_context(
            live_server(build_settings(tmp_path, overrides, storage_url), components))


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def get_json(url: str, **kw: Any) -> Any:
    return httpx.get(url, timeout=10, **kw).json()


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module (scripts/ is not a package, so it is loaded by path): the builders of
    the tiny random-weight models the tests run on (make_model, make_embedding_model, make_vlm…)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"ddx_script_{name}", REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_model(out_dir: Path, seed: int, preset: str = "tiny") -> Path:
    """scripts/make_model.py's build_model."""
    return Path(load_script("make_model").build_model(out_dir, preset=preset, seed=seed))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real MLX chat model (random weights, tool-calling template), built once per session."""
    return _build_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model with other weights (hot swap tests)."""
    return _build_model(tmp_path_factory.mktemp("tiny_model_b"), seed=1)
