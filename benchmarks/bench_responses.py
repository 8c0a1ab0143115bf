"""Benchmark of /v1/responses: turn latency by chain depth, with and without unrelated stored rows, and
100 concurrent clients. Mock engine (it answers in microseconds), so the figures are the gateway's own time.

    .venv/bin/python benchmarks/bench_responses.py [--rounds 30] [--unrelated 10000] [--clients 100]

Two real servers (`ddx-omni serve --mock`, subprocesses) on two fresh databases: one empty, one seeded with
`--unrelated` responses (written through the same Store code the server uses). On each, chains of depth
1, 10, 100 and 1000 are built through the API; then every round times one turn on top of each chain tip
(a new branch, so the depth stays put), in a shuffled order per round so that drift hits them all alike.

The client is a minimal keep-alive HTTP/1.1 client on asyncio streams: on a 2-core machine httpx's own CPU
cost at 100 connections dominated what was measured. The server's `Server-Timing` header splits each turn
into the engine's time and the gateway's; "gateway ms" below is the client-observed latency minus the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ddx_omni.responses.schemas import new_id
from ddx_omni.responses.store import INPUT, OUTPUT, ItemRow, Store
from harness import start_mock_server, stop

DEPTHS = (1, 10, 100, 1000)


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


class Connection:
    """One keep-alive HTTP/1.1 connection; `post` → (status, JSON body, engine ms from Server-Timing)."""

    def __init__(self, url: str) -> None:
        self.host, port = url.split("//", 1)[1].split(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        payload = await self.reader.readexactly(int(headers["content-length"]))
        timing = dict(p.strip().split(";dur=") for p in headers.get("server-timing", "engine;dur=0").split(","))
        return int(head[0].split()[1]), json.loads(payload), float(timing["engine"])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def turn(conn: Connection, previous: str | None, text: str) -> tuple[str, float]:
    status, body, engine_ms = await conn.post("/v1/responses", {"model": "mock", "input": text,
                                                                 "previous_response_id": previous})
    if status != 200:
        raise RuntimeError(f"{status}: {body}")
    return body["id"], engine_ms


async def build_chain(conn: Connection, depth: int) -> str:
    tip = None
    for n in range(depth):
        tip, _ = await turn(conn, tip, f"turn {n}: what is the weather like today in Berlin?")
    assert tip is not None
    return tip


Sample = tuple[float, float]  # (client-observed ms, engine ms)


async def measure(rounds: int, servers: dict[str, str], tips: dict[tuple[str, int], str]
                  ) -> dict[tuple[str, int], list[Sample]]:
    samples: dict[tuple[str, int], list[Sample]] = {key: [] for key in tips}
    conns = {name: Connection(url) for name, url in servers.items()}
    shuffle = random.Random(0)
    try:
        for key in tips:  # warm-up: one untimed turn each
            await turn(conns[key[0]], tips[key], "warm-up")
        for r in range(rounds):
            order = list(tips)
            shuffle.shuffle(order)  # a fresh order each round: no configuration always follows a heavy one
            for key in order:
                start = time.perf_counter()
                _, engine_ms = await turn(conns[key[0]], tips[key], f"measured turn {r}")
                samples[key].append(((time.perf_counter() - start) * 1000, engine_ms))
    finally:
        for conn in conns.values():
            await conn.close()
    return samples


async def concurrent_clients(url: str, clients: int, per_client: int) -> dict[str, Any]:
    """`clients` connections at once, each chaining `per_client` turns (so reads and writes interleave)."""
    errors: list[str] = []
    latencies: list[float] = []

    async def one(n: int) -> None:
        conn = Connection(url)
        previous = None
        try:
            for k in range(per_client):
                start = time.perf_counter()
                try:
                    previous, _ = await turn(conn, previous, f"client {n} request {k}")
                except (RuntimeError, OSError, asyncio.IncompleteReadError) as exc:
                    errors.append(repr(exc)[:200])
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(clients)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": clients * per_client, "errors": len(errors), "first_errors": errors[:3],
            "elapsed_s": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "p95_ms": latencies[int(len(latencies) * 0.95) - 1] if latencies else float("nan")}


async def build_all(servers: dict[str, str]) -> dict[tuple[str, int], str]:
    tips: dict[tuple[str, int], str] = {}
    for name, url in servers.items():
        conn = Connection(url)
        for depth in DEPTHS:
            print(f"building a chain of depth {depth} on the {name}-row database…", file=sys.stderr)
            tips[(name, depth)] = await build_chain(conn, depth)
        await conn.close()
    return tips


def median_gateway(samples: list[Sample]) -> float:
    return statistics.median(total - engine for total, engine in samples)


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
                process, url = start_mock_server(path)
                processes.append(process)
                servers[name] = url
            tips = asyncio.run(build_all(servers))
            samples = asyncio.run(measure(args.rounds, servers, tips))
            print(f"{args.clients} concurrent clients × {args.per_client} chained requests…", file=sys.stderr)
            load = asyncio.run(concurrent_clients(servers["0"], args.clients, args.per_client))
        finally:
            for process in processes:
                stop(process)

    print(f"\n### One /v1/responses turn (mock engine), medians of {args.rounds} interleaved rounds\n")
    names = list(servers)
    print("| chain depth | " + " | ".join(f"{n} unrelated: latency ms | engine ms | gateway ms" for n in names)
          + " | gateway × depth 1 |")
    print("|---:|" + "---:|---:|---:|" * len(names) + "---:|")
    base = median_gateway(samples[("0", 1)])
    for depth in DEPTHS:
        cells = []
        for name in names:
            values = samples[(name, depth)]
            cells += [f"{statistics.median(t for t, _ in values):.2f}",
                      f"{statistics.median(e for _, e in values):.3f}", f"{median_gateway(values):.2f}"]
        print(f"| {depth} | {' | '.join(cells)} | {median_gateway(samples[('0', depth)]) / base:.2f} |")
    print(f"\n### {args.clients} concurrent clients, {args.per_client} chained turns each\n")
    print("| requests | errors | wall s | requests/s | p50 ms | p95 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {load['requests']} | {load['errors']} | {load['elapsed_s']:.2f} | {load['rps']:.1f} | "
          f"{load['p50_ms']:.1f} | {load['p95_ms']:.1f} |")
    if load["errors"]:
        print("first errors:", load["first_errors"])


if __name__ == "__main__":
    main()
