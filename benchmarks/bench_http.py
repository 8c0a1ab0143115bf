"""Per-request overhead: mock-mode chat completions on ddx-omni vs a bare FastAPI app, with wrk, interleaved.

Both servers run in their own processes with the same uvicorn settings; wrk (Debian's package) drives each
for `--seconds` with `--connections`, alternating, `--rounds` times; the table gives medians and the paired ratios.
Besides requests/s and wrk's p99, each run reads the server process's CPU time (user + system) before and after:
CPU µs per request is what the server itself spends, which the other load on a shared machine disturbs far less
than requests/s (that one also measures how much of the machine the server got).
`--baseline-src DIR` adds ddx-omni from another checkout's src/ (the code before a change) to the same rounds.
    python benchmarks/bench_http.py [--rounds 3] [--seconds 10] [--connections 16] [--log-level warning] [--port N]
        [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from harness import free_port, start_mock_server, stop

HERE = Path(__file__).resolve().parent
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "What is the weather in Berlin?"}]})
LUA = f"wrk.method = 'POST'\nwrk.body = {json.dumps(BODY)}\nwrk.headers['Content-Type'] = 'application/json'\n"


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{url}/v1/chat/completions", content=BODY, headers={"content-type": "application/json"})
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


def start_servers(args: argparse.Namespace, tmp: Path) -> tuple[list[subprocess.Popen[bytes]], dict[str, str]]:
    """ddx-omni, ddx-omni from `--baseline-src` (another checkout's src/, through PYTHONPATH) if given, and the
    bare app answering with the bytes ddx-omni answers."""
    ports = iter(range(args.port, args.port + 3)) if args.port else iter(free_port, None)
    omni, url = start_mock_server(tmp / "omni", next(ports), log_level=args.log_level)
    procs, urls = [omni], {"ddx-omni": url}
    if args.baseline_src:
        before, urls["ddx-omni before"] = start_mock_server(tmp / "before", next(ports), log_level=args.log_level,
                                                            env={"PYTHONPATH": str(args.baseline_src)})
        procs.append(before)
    sample = httpx.post(f"{url}/v1/chat/completions", content=BODY, headers={"content-type": "application/json"}).text
    bare_port = next(ports)
    procs.append(subprocess.Popen([sys.executable, str(HERE / "bare_app.py"), str(bare_port), sample, args.log_level]))
    urls["bare FastAPI"] = f"http://127.0.0.1:{bare_port}"
    wait_up(urls["bare FastAPI"])
    return procs, urls


def wrk(url: str, seconds: int, connections: int, script: Path, pid: int) -> tuple[float, float, float]:
    """(requests/s, p99 ms, server CPU µs per request)."""
    server = psutil.Process(pid)
    before = sum(server.cpu_times()[:2])
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"{url}/v1/chat/completions"], capture_output=True, text=True, check=True).stdout
    cpu_s = sum(server.cpu_times()[:2]) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out).groups()
    return rps, float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], cpu_s / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--port", type=int, default=0, help="the first of three ports to use (default: free ones)")
    parser.add_argument("--baseline-src", type=Path, help="also measure ddx-omni from this src/ directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)
        procs, urls = start_servers(args, Path(tmp))
        try:
            for url, proc in zip(urls.values(), procs, strict=True):  # warm-up, not counted: first-call costs,
                wrk(url, 3, args.connections, script, proc.pid)  # and the STT engine still loading in the background
            runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in urls}
            for _ in range(args.rounds):
                for (name, url), proc in zip(urls.items(), procs, strict=True):
                    runs[name].append(wrk(url, args.seconds, args.connections, script, proc.pid))
        finally:
            for proc in procs:
                stop(proc)
    report(runs, args)


def report(runs: dict[str, list[tuple[float, float, float]]], args: argparse.Namespace) -> None:
    bare = runs["bare FastAPI"]
    print(f"wrk -t2 -c{args.connections} -d{args.seconds}s, {args.rounds} interleaved rounds, "
          f"log level {args.log_level}")
    print("| server | req/s | p99 ms | server CPU µs/request |\n|---|---:|---:|---:|")
    for name, rows in runs.items():
        print(f"| {name} | {statistics.median(r[0] for r in rows):,.0f} | {statistics.median(r[1] for r in rows):.1f}"
              f" | {statistics.median(r[2] for r in rows):.0f} |")
    for name in [n for n in runs if n != "bare FastAPI"]:
        for label, index, invert in (("req/s {} / bare", 0, False), ("p99 {} / bare", 1, False),
                                     ("CPU per request bare / {}", 2, True)):
            ratios = [(b[index] / o[index]) if invert else (o[index] / b[index])
                      for o, b in zip(runs[name], bare, strict=True)]
            print(f"paired {label.format(name)}: median {statistics.median(ratios):.2f} "
                  f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
