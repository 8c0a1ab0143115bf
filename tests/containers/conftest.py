"""Fixtures of the container tests: a started ContainersService with small limits, and helpers to run code.

The store is the `storage_url` fixture's: SQLite by default; a module that imports the parametrized fixture of
tests/responses/conftest.py runs on both SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ddx_omni.containers.service import ContainersService, FileSource
from ddx_omni.core.settings import Settings

from ..conftest import build_settings

# Small enough to hit quickly on a shared 2-core machine, large enough for numpy to import.
LIMITS = {"code_interpreter.timeout_s": 20, "code_interpreter.max_file_bytes": 64 * 1024 * 1024,
          "code_interpreter.max_output_bytes": 2000, "code_interpreter.max_processes": 32}


def container_settings(tmp_path: Path, overrides: dict[str, Any] | None = None, storage_url: str = "") -> Settings:
    return build_settings(tmp_path, {**LIMITS, **(overrides or {})}, storage_url)


@pytest.fixture
async def make_service(tmp_path: Path, storage_url: str) -> AsyncIterator[Callable[..., Any]]:
    """make_service(overrides=None, files=None, sandbox=None) → a started service (stopped after the test)."""
    started: list[ContainersService] = []

    async def make(overrides: dict[str, Any] | None = None, files: FileSource | None = None,
                   sandbox: Any = None) -> ContainersService:
        service = ContainersService(container_settings(tmp_path, overrides, storage_url), files, sandbox)
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


@pytest.fixture
async def service(make_service: Callable[..., Any]) -> ContainersService:
    return await make_service()
