"""Benchmark of the storage backends: turn latency on SQLite vs PostgreSQL at chain depth 1 and 100, and
aggregate requests/s of 1, 2 and 3 replicas sharing one PostgreSQL (mock engine: the figures are the gateway's
and the database's time, not a model's).

    .venv/bin/python benchmarks/bench_storage.py [--rounds 30] [--seconds 5] [--clients 48] [--repeats 3]

A real PostgreSQL (tests/postgres.py: initdb + pg_ctl in a temp dir, fsync on) and real servers
(`ddx-omni serve --mock` subprocesses). Latency: one server per backend, chains of depth 1 and 100 built through
the API, then each round times one turn on top of each tip (a new branch, so depth stays put) on both backends, in
a shuffled order. Throughput: three replicas up at once; each run sends `--clients` concurrent keep-alive clients
round-robin over the first N replicas for `--seconds` (plain one-turn responses), runs of N = 1, 2, 3 interleaved
and repeated; medians reported. All processes share this machine's cores with the client, so replicas compete for
the same CPUs: the scaling measured here is a floor, not what N machines give.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import free_port
from tests.postgres import PostgresServer


def start_server(workdir: Path, storage_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDX_")}
    env.update({"HOME": str(workdir), "DDX_RESPONSES__DB_PATH": str(workdir / "responses.db"),
                "DDX_STORAGE__URL": storage_url})
    process = subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--port", str(port), "--mock",
                                "--log-level", "warning"], cwd=workdir, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def build_chain(http: httpx.Client, url: str, depth: int) -> str:
    previous = None
    for turn in range(depth):
        answer = http.post(f"{url}/v1/responses", json={"model": "m", "input": f"turn {turn} of a chain",
                                                        "previous_response_id": previous})
        answer.raise_for_status()
        previous = answer.json()["id"]
    assert previous is not None
    return previous


def latency(urls: dict[str, str], rounds: int) -> dict[tuple[str, int], list[float]]:
    samples: dict[tuple[str, int], list[float]] = {}
    with httpx.Client(timeout=60) as http:
        tips = {(name, depth): build_chain(http, url, depth) for name, url in urls.items() for depth in (1, 100)}
        keys = list(tips)
        for _ in range(rounds):
            random.shuffle(keys)
            for key in keys:
                started = time.perf_counter()
                answer = http.post(f"{urls[key[0]]}/v1/responses", json={
                    "model": "m", "input": "one more turn", "previous_response_id": tips[key]})
                samples.setdefault(key, []).append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
    return samples


async def throughput(urls: list[str], clients: int, seconds: float) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(timeout=60) as http:
            turn = 0
            while time.monotonic() < deadline:
                answer = await http.post(f"{urls[(n + turn) % len(urls)]}/v1/responses",
                                         json={"model": "m", "input": f"client {n} turn {turn}"})
                answer.raise_for_status()
                done += 1
                turn += 1

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return done / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    postgres = PostgresServer(fsync=True)
    postgres.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            sqlite, sqlite_url = start_server(work / "sqlite", "")
            pg, pg_url = start_server(work / "pg", postgres.create_database("latency"))
            processes += [sqlite, pg]
            samples = latency({"sqlite": sqlite_url, "postgresql": pg_url}, args.rounds)
            print("| backend | depth | median ms | p90 ms |\n|---|---|---|---|")
            for (name, depth), values in sorted(samples.items()):
                values.sort()
                print(f"| {name} | {depth} | {statistics.median(values):.2f} | {values[int(len(values) * 0.9)]:.2f} |")
            for process in (sqlite, pg):
                process.send_signal(signal.SIGTERM)
                process.wait(30)
            shared = postgres.create_database("replicas")
            replicas = [start_server(work / f"replica{n}", shared) for n in range(3)]
            processes += [process for process, _ in replicas]
            urls = [url for _, url in replicas]
            rates: dict[int, list[float]] = {1: [], 2: [], 3: []}
            for _ in range(args.repeats):
                order = [1, 2, 3]
                random.shuffle(order)
                for n in order:
                    rates[n].append(asyncio.run(throughput(urls[:n], args.clients, args.seconds)))
            print(f"\n| replicas | requests/s (median of {args.repeats}) | runs |\n|---|---|---|")
            for n, values in rates.items():
                print(f"| {n} | {statistics.median(values):.0f} | {', '.join(f'{v:.0f}' for v in values)} |")
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        postgres.stop()


if __name__ == "__main__":
    main()
