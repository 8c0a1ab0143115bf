"""Stored state: retrieve, delete, input_items paging, the schema and its query plans, concurrency, SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ddx_omni.responses.store import CHAIN_SQL, MIGRATIONS, Store
from tests.conftest import free_port, wait_for

from .conftest import sdk
from .support import ScriptedEngine


def test_retrieve_delete_and_input_items_paging(serve: Any) -> None:
    client = sdk(serve(ScriptedEngine()))
    inputs = [{"role": "user", "content": f"message {n}"} for n in range(45)]
    response = client.responses.create(model="m", input=inputs)
    assert client.responses.retrieve(response.id).model_dump() == response.model_dump()

    first_page = client.responses.input_items.list(response.id, limit=10)
    assert len(first_page.data) == 10 and first_page.has_more is True
    assert first_page.first_id == first_page.data[0].id and first_page.last_id == first_page.data[-1].id
    newest_first = [item.content[0].text for item in client.responses.input_items.list(response.id, limit=10)]
    assert newest_first == [f"message {n}" for n in reversed(range(45))]  # auto-pagination over 5 pages
    oldest_first = list(client.responses.input_items.list(response.id, limit=7, order="asc"))
    assert [item.content[0].text for item in oldest_first] == [f"message {n}" for n in range(45)]
    assert len({item.id for item in oldest_first}) == 45
    assert len(list(client.responses.input_items.list(response.id))) == 45  # default limit 20

    for bad in ({"limit": 0}, {"limit": 101}, {"order": "sideways"}):
        with pytest.raises(openai.BadRequestError):
            client.responses.input_items.list(response.id, **bad)

    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)


def test_delete_answers_the_documented_body(serve: Any) -> None:
    url = serve(ScriptedEngine())
    rid = sdk(url).responses.create(model="m", input="x").id
    assert httpx.delete(f"{url}/v1/responses/{rid}", timeout=30).json() == {
        "id": rid, "object": "response.deleted", "deleted": True}


async def test_schema_is_versioned_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "responses.db"  # directories are created
    store = Store(path)
    await store.open()
    assert store.schema_version == len(MIGRATIONS)
    await store.close()
    await store.open()  # a second start applies nothing twice
    await store.close()
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT version FROM schema_version")] == list(range(1, len(MIGRATIONS) + 1))
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("INSERT INTO schema_version VALUES (99)")
    with pytest.raises(RuntimeError, match="newer than this ddx-omni"):
        await Store(path).open()


async def test_reads_use_indexes_never_a_table_scan(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    await store.open()
    await store.close()
    queries = {
        "chain": (CHAIN_SQL, ("resp_x",)),
        "input page": ("SELECT body FROM items WHERE response_id = ? AND kind = 0 AND seq < (SELECT seq FROM items "
                       "WHERE response_id = ? AND kind = 0 AND id = ?) ORDER BY seq DESC LIMIT 21", ("r", "r", "i")),
        "conversation": ("SELECT body FROM items WHERE conversation_id = ? ORDER BY seq", ("c",)),
        "item": ("SELECT body FROM items WHERE id = ? ORDER BY seq DESC LIMIT 1", ("i",)),
    }
    with sqlite3.connect(tmp_path / "r.db") as db:
        for name, (sql, args) in queries.items():
            plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            # only the CTE's own rows may be scanned; every table access is an index search
            assert not re.search(r"SCAN (?!chain)", plan), f"{name}: {plan}"
            assert "USING" in plan, f"{name}: {plan}"


def test_concurrent_requests_never_fail(serve: Any) -> None:
    url = serve(ScriptedEngine())

    def one_chain(n: int) -> list[int]:
        statuses, previous = [], None
        with httpx.Client(timeout=30) as http:
            for turn in range(3):
                body = {"model": "m", "input": f"client {n} turn {turn}", "previous_response_id": previous}
                answer = http.post(f"{url}/v1/responses", json=body)
                statuses.append(answer.status_code)
                previous = answer.json().get("id")
            statuses.append(http.get(f"{url}/v1/responses/{previous}").status_code)
        return statuses

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(one_chain, range(40)))
    assert all(status == 200 for statuses in results for status in statuses), results


def _serve_subprocess(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDX_")}
    env.update({"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"),
                "DDX_RESPONSES__DB_PATH": str(tmp_path / "db" / "responses.db")})
    process = subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--port", str(port), "--mock",
                                "--log-level", "warning"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            assert process.poll() is None, "the server exited"
            return False

    wait_for(ready, timeout=60, interval=0.1)
    return process


def test_sigkill_during_a_burst_loses_no_acknowledged_response(tmp_path: Path) -> None:
    port = free_port()
    server = _serve_subprocess(tmp_path, port)
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        previous = None
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    answer = http.post(f"http://127.0.0.1:{port}/v1/responses", json={
                        "model": "m", "input": f"writer {n} " + "x " * 50, "previous_response_id": previous})
                except httpx.HTTPError:
                    return  # the server is gone
                if answer.status_code == 200:
                    previous = answer.json()["id"]
                    acknowledged.append(previous)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(acknowledged) >= 150, timeout=60, interval=0.01)
        os.kill(server.pid, signal.SIGKILL)  # mid-burst: requests are in flight right now
        server.wait(10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        if server.poll() is None:
            server.kill()
    assert len(acknowledged) >= 150

    restarted = _serve_subprocess(tmp_path, free_port())
    try:
        port = int(restarted.args[restarted.args.index("--port") + 1])
        with httpx.Client(timeout=30) as http:
            for rid in acknowledged:
                answer = http.get(f"http://127.0.0.1:{port}/v1/responses/{rid}")
                assert answer.status_code == 200 and answer.json()["status"] == "completed", rid
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(20)
    # no half-written response: every stored response has exactly its output items and its one input item
    with sqlite3.connect(tmp_path / "db" / "responses.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for rid, body in db.execute("SELECT id, body FROM responses"):
            kinds = dict(db.execute("SELECT kind, COUNT(*) FROM items WHERE response_id = ? GROUP BY kind", (rid,)))
            assert kinds == {0: 1, 1: len(json.loads(body)["output"])}, rid


def test_health_reports_the_database(server_factory: Any, tmp_path: Path, storage_url: str) -> None:
    url = server_factory()
    component = httpx.get(f"{url}/health", timeout=30).json()["components"]["responses"]
    assert component["state"] == "ready" and component["db_path"] == (storage_url or str(tmp_path / "responses.db"))
    assert component["storage"] == ("postgresql" if storage_url else "sqlite")
    assert component["schema_version"] == len(MIGRATIONS)
