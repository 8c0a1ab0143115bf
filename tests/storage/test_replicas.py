"""N replicas on one PostgreSQL database: reads, chains, cancel and stream attach across replicas; leases (a
starting replica leaves live responses alone, survivors fail a dead one's); a burst over 3 subprocess replicas
with one SIGKILLed, losing nothing acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ddx_omni.responses.service import create_service, responses_database
from ddx_omni.responses.store import Store
from tests.conftest import build_settings, free_port, fresh_database, live_server, wait_for
from tests.responses.conftest import sdk
from tests.responses.support import FakeLlm, ScriptedEngine, check_event_order, read_sse

LEASE = {"storage.heartbeat_s": 0.2, "storage.lease_s": 1.0}
WORDS = " ".join(f"w{i}" for i in range(200))  # 200 pieces at 0.03 s: 6 s of generation


@pytest.fixture
def pg_url(postgres: Any) -> str:
    return fresh_database(postgres)


@contextlib.contextmanager
def replicas(tmp_path: Path, url: str, count: int, delay: float = 0.0) -> Iterator[list[tuple[str, Any]]]:
    """`count` in-process replicas (each its own service, pool, engine and port) on one database → [(url, service)]."""
    with contextlib.ExitStack() as stack:
        out = []
        for n in range(count):
            home = tmp_path / f"r{n}"
            home.mkdir(parents=True)
            settings = build_settings(home, LEASE, url)
            llm = FakeLlm(ScriptedEngine(delay=delay))
            service = create_service(settings, llm)
            out.append((stack.enter_context(live_server(settings, {"llm": llm, "responses": service})), service))
        yield out


def test_a_response_is_readable_chainable_and_deletable_from_every_replica(tmp_path: Path, pg_url: str) -> None:
    with replicas(tmp_path, pg_url, 3) as nodes:
        clients = [sdk(url) for url, _ in nodes]
        previous = None
        for turn in range(6):
            answer = clients[turn % 3].responses.create(model="m", input=f"turn {turn}", previous_response_id=previous)
            previous = answer.id
        for client in clients:
            assert client.responses.retrieve(previous).output_text == "Echo: turn 5"
        history = [item.content[0].text for item in clients[1].responses.input_items.list(previous, order="asc")]
        assert history == ["turn 5"]
        # the whole chain reached the engine of the last replica: every turn's input and output, in order
        prompt = nodes[2][1].llm._engine.prompts[-1]
        assert [m["content"] for m in prompt if m["role"] == "user"] == [f"turn {t}" for t in range(6)]
        clients[0].responses.delete(previous)
        assert httpx.get(f"{nodes[2][0]}/v1/responses/{previous}", timeout=10).status_code == 404


def test_cancel_and_stream_a_background_response_from_other_replicas(tmp_path: Path, pg_url: str) -> None:
    with replicas(tmp_path, pg_url, 3, delay=0.03) as nodes:
        (a, service_a), (b, _), (c, _) = nodes
        first = sdk(a).responses.create(model="m", input=WORDS, background=True)
        wait_for(lambda: len(sdk(b).responses.retrieve(first.id).output_text.split()) >= 3, timeout=30)
        events, _ = read_sse(b, get=f"/v1/responses/{first.id}?stream=true")  # relayed from its owner, a
        final = check_event_order(events)
        assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "Echo: " + WORDS

        second = sdk(a).responses.create(model="m", input=WORDS, background=True)
        wait_for(lambda: second.id in service_a.turns and len(sdk(c).responses.retrieve(second.id).output_text) > 8)
        with pytest.raises(Exception, match="still in progress"):
            sdk(b).responses.create(model="m", input="next", previous_response_id=second.id)
        cancelled = sdk(c).responses.cancel(second.id)
        assert cancelled.status == "cancelled" and 0 < len(cancelled.output_text.split()) < 100
        assert sdk(b).responses.retrieve(second.id).status == "cancelled"
        assert service_a.llm._engine.outcomes == ["finished", "aborted"]


def test_a_starting_replica_leaves_live_responses_alone(tmp_path: Path, pg_url: str) -> None:
    with replicas(tmp_path, pg_url, 1, delay=0.03) as nodes:
        url = nodes[0][0]
        running = sdk(url).responses.create(model="m", input=WORDS, background=True)
        wait_for(lambda: sdk(url).responses.retrieve(running.id).status == "in_progress")
        with replicas(tmp_path / "late", pg_url, 1) as late:  # starts (and sweeps) while it runs
            time.sleep(1.5)  # more than a lease: the late replica's heartbeat sweeps ran meanwhile
            assert sdk(late[0][0]).responses.retrieve(running.id).status == "in_progress"
        wait_for(lambda: sdk(url).responses.retrieve(running.id).status == "completed", timeout=30)


async def test_survivors_fail_the_responses_of_a_dead_replica(tmp_path: Path, pg_url: str) -> None:
    settings = build_settings(tmp_path, LEASE, pg_url)
    store = Store(responses_database(settings))
    await store.open()
    # a replica that stopped beating 5 s ago, and one that beats now; each left a response in progress
    await store.db.transaction([
        (f"INSERT INTO replicas (id, url, started_at, heartbeat_at) VALUES (?, ?, {store.db.now_sql} - 5,"
         f" {store.db.now_sql} - 5)", ("replica_dead", "http://10.0.0.1:1"), False),
        (f"INSERT INTO replicas (id, url, started_at, heartbeat_at) VALUES (?, ?, {store.db.now_sql},"
         f" {store.db.now_sql})", ("replica_live", "http://10.0.0.2:1"), False)])
    for owner in ("replica_dead", "replica_live"):
        body = {"id": f"resp_{owner}", "status": "in_progress", "created_at": 1.0, "background": True, "error": None}
        await store.save_response(body, [], owner=owner)
    service = create_service(settings, FakeLlm(ScriptedEngine()))
    await service.start()
    try:
        assert (await store.get_response("resp_replica_dead"))["status"] == "failed"
        assert (await store.get_response("resp_replica_live"))["status"] == "in_progress"
        # the live one goes silent too: the survivor's heartbeat sweep fails it once its lease is over
        deadline = time.monotonic() + 10
        while (await store.get_response("resp_replica_live"))["status"] != "failed":
            assert time.monotonic() < deadline, "the silent replica's response was never failed"
            await asyncio.sleep(0.1)
    finally:
        await service.stop()
        await store.close()


# ---- 3 subprocess replicas, round-robin clients, one SIGKILLed -----------------------------------------

def _replica(tmp_path: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDX_")}
    env.update({"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), "DDX_STORAGE__URL": url,
                "DDX_STORAGE__HEARTBEAT_S": "0.2", "DDX_STORAGE__LEASE_S": "1.0"})
    return subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--port", str(port), "--mock",
                             "--log-level", "warning"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ready(port: int, process: subprocess.Popen[bytes]) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        assert process.poll() is None, "a replica exited"
        return False


@pytest.mark.slow
def test_three_replicas_round_robin_burst_with_one_sigkilled(tmp_path: Path, pg_url: str) -> None:
    ports = [free_port() for _ in range(3)]
    processes = [_replica(tmp_path, pg_url, port) for port in ports]  # started together: one migration
    acknowledged: dict[str, str] = {}  # response id → its input
    errors: list[str] = []
    killed = threading.Event()
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_for(lambda p=port, pr=process: _ready(p, pr), timeout=60, interval=0.1)

        def client(n: int) -> None:
            previous, turn, attempt = None, 0, 0
            # a new connection per request, as through a load balancer: a kept-alive one can be closed by the
            # server's idle timeout just as the next request goes out (an HTTP/1.1 client race, not a lost write)
            with httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as http:
                while turn < 10:
                    port = ports[(n + turn + attempt) % 3]  # each turn on another replica
                    body = {"model": "m", "input": f"client {n} turn {turn}", "previous_response_id": previous}
                    try:
                        answer = http.post(f"http://127.0.0.1:{port}/v1/responses", json=body)
                    except httpx.HTTPError as exc:
                        if not killed.is_set() or port != ports[0]:
                            errors.append(f"client {n} turn {turn}: no answer from {port}: {exc!r}")
                            return
                        attempt += 1  # the killed replica: unacknowledged, retried on the next one
                        continue
                    if answer.status_code != 200:
                        errors.append(f"client {n} turn {turn}: {answer.status_code} {answer.text[:200]}")
                        return
                    previous = answer.json()["id"]
                    acknowledged[previous] = body["input"]
                    turn += 1

        with ThreadPoolExecutor(max_workers=100) as pool:
            futures = [pool.submit(client, n) for n in range(100)]
            wait_for(lambda: len(acknowledged) >= 300, timeout=120, interval=0.01)
            killed.set()
            os.kill(processes[0].pid, signal.SIGKILL)  # mid-burst: requests are in flight on it right now
            for future in futures:
                future.result(timeout=300)
        assert errors == []
        assert len(acknowledged) == 1000  # 100 clients × 10 turns, each acknowledged once
        with httpx.Client(timeout=30) as http:  # nothing acknowledged is lost: every one, on a survivor
            for n, (rid, text) in enumerate(acknowledged.items()):
                answer = http.get(f"http://127.0.0.1:{ports[1 + n % 2]}/v1/responses/{rid}")
                assert answer.status_code == 200 and answer.json()["status"] == "completed", rid
                items = http.get(f"http://127.0.0.1:{ports[1 + n % 2]}/v1/responses/{rid}/input_items").json()
                assert [i["content"][0]["text"] for i in items["data"]] == [text], rid
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
            if process.poll() is None:
                process.kill()
