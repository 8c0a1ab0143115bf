"""Containers with N replicas on one PostgreSQL database: a container lives on the replica that made it, any
other relays its files, code and delete there (the code interpreter of a response included); a starting
replica leaves the others' containers alone, and a dead replica's containers expire on the survivors."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ddx_omni.app import build_components
from ddx_omni.containers import service as service_module
from ddx_omni.containers.service import ContainersService
from ddx_omni.containers.store import ContainerStore
from ddx_omni.storage import open_database
from tests.conftest import build_settings, fresh_database, live_server

from .conftest import LIMITS

LEASE = {"storage.heartbeat_s": 0.2, "storage.lease_s": 1.0}
SCRIPT = [
    {"match": "^compute the answer", "reply": {"tool_calls": [{"name": "code_interpreter",
                                                              "arguments": {"code": "x = 6 * 7"}}]}},
    {"match": "^\\(no output\\)", "reply": {"content": "Stored."}},
    {"match": "^show it", "reply": {"tool_calls": [{"name": "code_interpreter", "arguments": {
        "code": "print(x, open('/mnt/data/data.csv').read().strip())"}}]}},
    {"match": "^42 a,b", "reply": {"content": "Shown."}},
]


@pytest.fixture
def pg_url(postgres: Any) -> str:
    return fresh_database(postgres)


@contextlib.contextmanager
def replica(home: Path, url: str) -> Iterator[tuple[openai.OpenAI, ContainersService]]:
    """A whole ddx-omni (mock model, responses with their heartbeat, containers) on the database `url`."""
    home.mkdir(parents=True)
    script = home / "script.json"
    script.write_text(json.dumps(SCRIPT))
    settings = build_settings(home, {**LEASE, **LIMITS, "llm.mock_script": str(script)}, url)
    components = build_components(settings)
    with live_server(settings, dict(components)) as base:
        yield (openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=60, max_retries=0),
               components["code_interpreter"])  # type: ignore[misc]


def test_files_code_and_delete_reach_the_replica_that_runs_the_container(tmp_path: Path, pg_url: str) -> None:
    with replica(tmp_path / "a", pg_url) as (a, on_a), replica(tmp_path / "b", pg_url) as (b, on_b):
        c = a.containers.create(name="shared")
        assert b.containers.retrieve(c.id).status == "running"  # a record: any replica reads it
        f = b.containers.files.create(c.id, file=("data.csv", b"a,b\n"))  # relayed to a, where the files are
        assert on_a.data_dir(c.id).joinpath("data.csv").read_bytes() == b"a,b\n"
        assert not on_b.data_dir(c.id).exists()
        assert [x.id for x in b.containers.files.list(c.id)] == [f.id]
        assert b.containers.files.content.retrieve(f.id, container_id=c.id).read() == b"a,b\n"

        tool = [{"type": "code_interpreter", "container": c.id}]
        first = b.responses.create(model="m", input="compute the answer", tools=tool)  # the code runs on a
        assert first.output_text == "Stored." and on_b.kernels == {} and list(on_a.kernels) == [c.id]
        second = b.responses.create(model="m", input="show it", tools=tool, previous_response_id=first.id,
                                    include=["code_interpreter_call.outputs"])
        (call,) = [item for item in second.output if item.type == "code_interpreter_call"]
        assert call.outputs[0].logs == "42 a,b\n"  # the same process: x survived, the file is there

        b.containers.delete(c.id)  # relayed: a kills the process and removes the files
        assert on_a.kernels == {} and not on_a.data_dir(c.id).exists()
        with pytest.raises(openai.NotFoundError):
            a.containers.retrieve(c.id)


async def test_a_starting_replica_leaves_others_alone_and_survivors_expire_a_dead_ones(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "SWEEP_INTERVAL_S", 3600.0)  # only the start-up sweeps, in this test
    store = ContainerStore(open_database(pg_url))
    await store.open()
    try:
        with replica(tmp_path / "a", pg_url) as (a, on_a):
            idle = a.containers.create(name="idle")
            a.containers.files.create(idle.id, file=("k.txt", b"k"))
            await store.touch(idle.id, 0)  # idle for ages, but a's: only a can end its process
            with replica(tmp_path / "b", pg_url) as (b, _):  # b's start-up sweep leaves it to a
                assert b.containers.retrieve(idle.id).status == "running"
                assert [f.path for f in b.containers.files.list(idle.id)] == ["/mnt/data/k.txt"]
            assert on_a.data_dir(idle.id).exists()
        # a is gone (its heartbeat with it): a replica starting now finds a's container dead and expires it
        with replica(tmp_path / "c", pg_url) as (c, _):
            assert c.containers.retrieve(idle.id).status == "expired"
            refused = httpx.get(f"{c.base_url}containers/{idle.id}/files", timeout=10)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "container_expired"
        assert await store.files(idle.id) == []
    finally:
        await store.close()
