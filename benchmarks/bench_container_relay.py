"""Benchmark of a container request relayed to the replica that runs the container, against the same request sent
to that replica directly: what a load balancer that lands on the wrong replica costs.

    .venv/bin/python benchmarks/bench_container_relay.py [--rounds 30] [--per-round 5]

A real PostgreSQL (tests/postgres.py, fsync on) and two `ddx-omni serve --mock` replicas sharing it (the
servers of bench_storage.py). One container on replica A holds a 1 KiB and a 1 MiB file. Each round times four
variants in a shuffled order — list the files, download the 1 MiB file, each on A (direct) and on B (relayed to
A) — each the median of `--per-round` requests on a keep-alive client; reported: medians over rounds, and the
median of each round's relayed/direct ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.postgres import PostgresServer

from bench_storage import start_server

VARIANTS = [("list files", "direct"), ("list files", "relayed"), ("download 1 MiB", "direct"),
            ("download 1 MiB", "relayed")]


def one_round(http: httpx.Client, urls: dict[str, str], paths: dict[str, str], per_round: int) -> dict[Any, float]:
    times = {}
    for variant in random.sample(VARIANTS, len(VARIANTS)):
        what, where = variant
        samples = []
        for _ in range(per_round):
            started = time.perf_counter()
            answer = http.get(urls[where] + paths[what])
            samples.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
        times[variant] = statistics.median(samples)
    return times


def prepare(http: httpx.Client, a: str) -> dict[str, str]:
    made = http.post(f"{a}/v1/containers", json={"name": "bench"})
    if made.status_code != 200:
        raise SystemExit(f"cannot create a container: {made.text}")
    container = made.json()["id"]
    http.post(f"{a}/v1/containers/{container}/files", files={"file": ("small.txt", b"x" * 1024)}).raise_for_status()
    big = http.post(f"{a}/v1/containers/{container}/files",
                    files={"file": ("big.bin", random.randbytes(1 << 20))}).raise_for_status().json()["id"]
    return {"list files": f"/v1/containers/{container}/files",
            "download 1 MiB": f"/v1/containers/{container}/files/{big}/content"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=5)
    args = parser.parse_args()
    with contextlib.ExitStack() as cleanup, httpx.Client(timeout=60) as http:
        postgres = PostgresServer(fsync=True)
        postgres.start()
        cleanup.callback(postgres.stop)  # callbacks run last-in first-out: the servers before their database
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        tmp.chmod(0o755)  # the containers' own uids must reach their directories under it
        shared = postgres.create_database("relay")
        urls = {}
        for where, name in (("direct", "a"), ("relayed", "b")):
            process, urls[where] = start_server(tmp / name, shared)
            cleanup.callback(_terminate, process)
        paths = prepare(http, urls["direct"])
        one_round(http, urls, paths, args.per_round)  # warm-up: connections, the relay's client
        rounds = [one_round(http, urls, paths, args.per_round) for _ in range(args.rounds)]
    print("| request | direct ms | relayed ms | relayed/direct (median of rounds) |\n|---|---|---|---|")
    for what in ("list files", "download 1 MiB"):
        direct = [r[(what, "direct")] for r in rounds]
        relayed = [r[(what, "relayed")] for r in rounds]
        ratio = statistics.median(b / a for a, b in zip(direct, relayed, strict=True))
        print(f"| {what} | {statistics.median(direct):.2f} | {statistics.median(relayed):.2f} | {ratio:.2f} |")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(30)

if __name__ == "__main__":
    main()
