"""Benchmark of /v1/responses: turn latency by chain depth, with and without unrelated stored rows, and
100 concurrent clients. Mock engine (it answers in microseconds), so the figures are the gateway's own time.

    .venv/bin/python benchmarks/bench_responses.py [--rounds 30] [--unrelated 10000] [--clients 100]

Two real servers (`ddx-omni serve --mock`, subprocesses) on two fresh databases: one empty, one seeded with
`--unrelated` responses (written through the same Store code the server uses). On each, chains of depth
1, 10, 100 and 1000 are built through the API; then every round times one turn on top of each chain tip
(a new branch, so the depth stays put), interleaving configurations so that drift hits them all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ddx_omni.responses.schemas import new_id
from ddx_omni.responses.store import INPUT, OUTPUT, ItemRow, Store

DEPTHS = (1, 10, 100, 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDX_")}
    env.update({"HOME": str(workdir), "DDX_RESPONSES__DB_PATH": str(workdir / "responses.db")})
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
    process.kill()
    raise RuntimeError("server did not start")


async def seed_unrelated(db_path: Path, count: int) -> None:
    """`count` stored responses (one input, one output item each) that no measured chain touches."""
    store = Store(db_path)
    await store.open()
    for n in range(count):
        rid = new_id("resp")
        body = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
                "background": False, "previous_response_id": None, "output": []}
        user = {"id": new_id("msg"), "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_text", "text": f"unrelated question {n} " + "lorem " * 20}]}
        answer = {"id": new_id("fc"), "type": "function_call", "status": "completed", "call_id": "call_0",
                  "name": "get_weather", "arguments": '{"city":"Berlin"}'}
        body["output"] = [answer]
        await store.save_response(body, [ItemRow(user, INPUT), ItemRow(answer, OUTPUT)])
    await store.close()


def turn(http: httpx.Client, url: str, previous: str | None, text: str) -> str:
    answer = http.post(f"{url}/v1/responses", json={"model": "mock", "input": text, "previous_response_id": previous})
    answer.raise_for_status()
    return answer.json()["id"]


def build_chain(http: httpx.Client, url: str, depth: int) -> str:
    tip = None
    for n in range(depth):
        tip = turn(http, url, tip, f"turn {n}: what is the weather like today in Berlin?")
    assert tip is not None
    return tip


def measure(rounds: int, servers: dict[str, str], tips: dict[tuple[str, int], str]) -> dict[tuple[str, int], list[float]]:
    timings: dict[tuple[str, int], list[float]] = {key: [] for key in tips}
    clients = {name: httpx.Client(timeout=60) for name in servers}
    try:
        for key in tips:  # warm-up: one untimed turn each
            turn(clients[key[0]], servers[key[0]], tips[key], "warm-up")
        for r in range(rounds):
            order = list(tips) if r % 2 == 0 else list(reversed(list(tips)))
            for key in order:
                name, _ = key
                start = time.perf_counter()
                turn(clients[name], servers[name], tips[key], f"measured turn {r}")
                timings[key].append((time.perf_counter() - start) * 1000)
    finally:
        for client in clients.values():
            client.close()
    return timings


async def concurrent_clients(url: str, clients: int, per_client: int) -> dict[str, Any]:
    errors: list[str] = []
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one(http: httpx.AsyncClient, n: int) -> None:
        previous = None
        for k in range(per_client):
            start = time.perf_counter()
            try:
                answer = await http.post(f"{url}/v1/responses", json={
                    "model": "mock", "input": f"client {n} request {k}", "previous_response_id": previous})
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code}: {answer.text[:200]}")
                    continue
                previous = answer.json()["id"]
                latencies.append((time.perf_counter() - start) * 1000)
            except httpx.HTTPError as exc:
                errors.append(repr(exc))

    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(one(http, n) for n in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": clients * per_client, "errors": len(errors), "first_errors": errors[:3],
            "elapsed_s": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] if latencies else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--unrelated", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-client", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_responses_") as tmp:
        root = Path(tmp)
        dirs = {"0": root / "empty", f"{args.unrelated}": root / "seeded"}
        for path in dirs.values():
            path.mkdir()
        print(f"seeding {args.unrelated} unrelated responses…", file=sys.stderr)
        asyncio.run(seed_unrelated(dirs[f"{args.unrelated}"] / "responses.db", args.unrelated))
        processes, servers = [], {}
        try:
            for name, path in dirs.items():
                process, url = start_server(path)
                processes.append(process)
                servers[name] = url
            tips: dict[tuple[str, int], str] = {}
            with httpx.Client(timeout=60) as http:
                for name, url in servers.items():
                    for depth in DEPTHS:
                        print(f"building a chain of depth {depth} on the {name}-row database…", file=sys.stderr)
                        tips[(name, depth)] = build_chain(http, url, depth)
            timings = measure(args.rounds, servers, tips)
            print(f"{args.clients} concurrent clients × {args.per_client} chained requests…", file=sys.stderr)
            load = asyncio.run(concurrent_clients(servers["0"], args.clients, args.per_client))
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
                process.wait(30)

    print(f"\n### One /v1/responses turn (mock engine), median of {args.rounds} interleaved rounds\n")
    print("| chain depth | 0 unrelated: median ms | p90 ms | "
          f"{args.unrelated} unrelated: median ms | p90 ms | × depth 1 (0 unrelated) |")
    print("|---:|---:|---:|---:|---:|---:|")
    base = statistics.median(timings[("0", 1)])
    for depth in DEPTHS:
        cells = []
        for name in servers:
            values = sorted(timings[(name, depth)])
            cells += [f"{statistics.median(values):.2f}", f"{values[int(len(values) * 0.9) - 1]:.2f}"]
        ratio = statistics.median(timings[("0", depth)]) / base
        print(f"| {depth} | {' | '.join(cells)} | {ratio:.2f} |")
    print(f"\n### {args.clients} concurrent clients, {args.per_client} chained turns each\n")
    print("| requests | errors | wall s | requests/s | p50 ms | p95 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {load['requests']} | {load['errors']} | {load['elapsed_s']:.2f} | {load['rps']:.1f} | "
          f"{load['p50_ms']:.1f} | {load['p95_ms']:.1f} |")
    if load["errors"]:
        print("first errors:", load["first_errors"])


if __name__ == "__main__":
    main()
