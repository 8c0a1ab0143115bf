"""Benchmark of MCP inside /v1/responses: what one MCP call adds to a turn, over streamable HTTP and over stdio,
and the turn time at chain depth 1 vs 50 with the listing reused from the chain.

    .venv/bin/python benchmarks/bench_mcp.py [--rounds 40] [--depth 50]

Real processes: ddx-omni (`serve --mock`, a mock script that calls `add` and then answers), the demo MCP server
of the tests (tests/tools/mcp_demo_server.py, the `mcp` package's MCPServer) over streamable HTTP, and the same
server over stdio as a `[[responses.mcp_servers]]` entry that ddx-omni starts. Per round, in a shuffled order:

- `plain`: a one-generation turn with no tools (the gateway's floor);
- `http call` / `stdio call`: a turn whose model calls `add` once, then answers (two generations), on a branch of
  a response that already holds the listing (so no tools/list: the listing is reused);
- `raw http` / `raw stdio`: the same `tools/call` through a bare `mcp` ClientSession kept open in this process
  (the MCP round trip itself: the tool's own time plus the transport);
- `depth 1` / `depth N`: an HTTP call turn on top of a chain of 1 or N such turns (one listing, at the root).

"added" = call turn − plain turn; "ddx-omni's own" = that minus the server's time inside the call (its
Server-Timing `tools`: the MCP round trip, with the tool's own time): what the loop adds around one MCP round trip
(the second generation, the items, the bigger save). Medians; the mock engine answers in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from harness import free_port

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "tests" / "tools" / "mcp_demo_server.py"
SCRIPT = [{"match": "please add", "reply": {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}},
          {"match": r"2 \+ 3 = 5", "reply": {"content": "The sum is 5."}},
          {"match": ".", "reply": {"content": "Plain answer."}}]


def wait_http(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def start(workdir: Path) -> tuple[list[subprocess.Popen[bytes]], str, str]:
    """The demo MCP server over HTTP, and ddx-omni configured with it over stdio → (processes, omni, mcp url)."""
    mcp_port, omni_port = free_port(), free_port()
    demo = subprocess.Popen([sys.executable, str(DEMO), "http", str(workdir / "http-counts.json"), str(mcp_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (workdir / "script.json").write_text(json.dumps(SCRIPT))
    (workdir / "config.toml").write_text(
        f'[llm]\nmock_script = "{workdir / "script.json"}"\n[responses]\ndb_path = "{workdir / "r.db"}"\n'
        f'[[responses.mcp_servers]]\nlabel = "local"\ncommand = "{sys.executable}"\n'
        f'args = ["{DEMO}", "stdio", "{workdir / "stdio-counts.json"}"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDX_")}
    omni = subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--config", str(workdir / "config.toml"),
                             "--port", str(omni_port), "--mock", "--log-level", "warning"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{mcp_port}/mcp", demo)
    wait_http(f"http://127.0.0.1:{omni_port}/health", omni)
    return [demo, omni], f"http://127.0.0.1:{omni_port}", f"http://127.0.0.1:{mcp_port}/mcp"


class Omni:
    def __init__(self, url: str, mcp_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=url, timeout=60)
        self.tools_ms = 0.0  # the last turn's time inside built-in tools (its Server-Timing `tools`)
        self.tools = {"http": {"type": "mcp", "server_label": "demo", "server_url": mcp_url,
                               "require_approval": "never"},
                      "stdio": {"type": "mcp", "server_label": "local", "require_approval": "never"}}

    async def turn(self, text: str, server: str | None = None, previous: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": "mock", "input": text, "previous_response_id": previous}
        if server:
            body["tools"] = [self.tools[server]]
        answer = await self.client.post("/v1/responses", json=body)
        answer.raise_for_status()
        result = answer.json()
        if server and text == "please add":
            assert [i["type"] for i in result["output"]][-2:] == ["mcp_call", "message"], result["output"]
        timing = dict(p.strip().split(";dur=") for p in answer.headers["server-timing"].split(","))
        self.tools_ms = float(timing["tools"])
        return result


async def raw_sessions(mcp_url: str, workdir: Path, stack: Any) -> dict[str, Any]:
    """Bare `mcp` client sessions, kept open: the MCP round trip without ddx-omni."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client

    sessions = {}
    for name, transport in (("http", streamable_http_client(mcp_url)),
                            ("stdio", stdio_client(StdioServerParameters(
                                command=sys.executable, args=[str(DEMO), "stdio", str(workdir / "raw.json")])))):
        read, write = await stack.enter_async_context(transport)
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        await session.list_tools()
        sessions[name] = session
    return sessions


async def run(rounds: int, depth: int) -> dict[str, list[float]]:
    import contextlib

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        processes, url, mcp_url = start(workdir)
        omni = Omni(url, mcp_url)
        try:
            async with contextlib.AsyncExitStack() as stack:
                sessions = await raw_sessions(mcp_url, workdir, stack)
                roots = {s: (await omni.turn("please add", s))["id"] for s in ("http", "stdio")}  # the listings
                tip = roots["http"]
                for _ in range(depth - 1):
                    tip = (await omni.turn("please add", "http", tip))["id"]
                cases: dict[str, Callable[[], Awaitable[Any]]] = {
                    "plain": lambda: omni.turn("hello"),
                    "http call": lambda: omni.turn("please add", "http", roots["http"]),
                    "stdio call": lambda: omni.turn("please add", "stdio", roots["stdio"]),
                    "raw http": lambda: sessions["http"].call_tool("add", {"a": 2, "b": 3}),
                    "raw stdio": lambda: sessions["stdio"].call_tool("add", {"a": 2, "b": 3}),
                    "depth 1": lambda: omni.turn("please add", "http", roots["http"]),
                    f"depth {depth}": lambda: omni.turn("please add", "http", tip),
                }
                return await measure(cases, rounds, omni)
        finally:
            await omni.client.aclose()
            for process in processes:
                process.terminate()
                process.wait(10)


async def measure(cases: dict[str, Callable[[], Awaitable[Any]]], rounds: int, omni: Omni) -> dict[str, list[float]]:
    """Client-observed ms per case; for the call turns also `<case> tools`: the server's time inside the MCP
    call (Server-Timing), i.e. ddx-omni's MCP client round trip including the tool's own time."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    samples.update({f"{name} tools": [] for name in ("http call", "stdio call")})
    for case in cases.values():  # warm-up, untimed
        await case()
    order, shuffle = list(cases), random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)  # interleaved: drift on a shared machine hits every case alike
        for name in order:
            started = time.perf_counter()
            await cases[name]()
            samples[name].append((time.perf_counter() - started) * 1000)
            if f"{name} tools" in samples:
                samples[f"{name} tools"].append(omni.tools_ms)
    return samples


def report(samples: dict[str, list[float]], depth: int) -> str:
    med = {name: statistics.median(values) for name, values in samples.items()}
    lines = ["| case | median ms | p90 ms |", "|---|---|---|"]
    for name, values in samples.items():
        p90 = sorted(values)[int(len(values) * 0.9) - 1]
        lines.append(f"| {name} | {med[name]:.2f} | {p90:.2f} |")
    for transport in ("http", "stdio"):
        added = med[f"{transport} call"] - med["plain"]
        lines.append(f"| one MCP call over {transport}: added to the turn | {added:.2f} | |")
        lines.append(f"| … of which ddx-omni's own (tool round trip subtracted) | "
                     f"{added - med[f'{transport} call tools']:.2f} | |")
    lines.append(f"| depth {depth} − depth 1 | {med[f'depth {depth}'] - med['depth 1']:.2f} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--depth", type=int, default=50)
    args = parser.parse_args()
    samples = asyncio.run(run(args.rounds, args.depth))
    print(f"bench_mcp: {args.rounds} interleaved rounds, {os.cpu_count()} cores\n")
    print(report(samples, args.depth))


if __name__ == "__main__":
    main()
