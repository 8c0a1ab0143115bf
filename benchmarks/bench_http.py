"""Per-request overhead: mock-mode chat completions on ddx-omni vs a bare FastAPI app, with wrk, interleaved.

Both servers run in their own processes with the same uvicorn settings; wrk (Debian's package) drives each
for `--seconds` with `--connections`, alternating, `--rounds` times; the table gives medians and the paired ratio.
    python benchmarks/bench_http.py [--rounds 3] [--seconds 10] [--connections 16] [--log-level warning]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "What is the weather in Berlin?"}]})
LUA = f"wrk.method = 'POST'\nwrk.body = {json.dumps(BODY)}\nwrk.headers['Content-Type'] = 'application/json'\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{url}/v1/chat/completions", content=BODY, headers={"content-type": "application/json"})
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


def start_servers(log_level: str, tmp: Path, port: int) -> tuple[list[subprocess.Popen[bytes]], dict[str, str]]:
    omni_port, bare_port = (port, port + 1) if port else (free_port(), free_port())
    env = {**os.environ, "XDG_STATE_HOME": str(tmp), "DDX_RESPONSES__DB_PATH": str(tmp / "r.db")}
    omni = subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--port", str(omni_port),
                             "--log-level", log_level], env=env, cwd=tmp)
    urls = {"ddx-omni": f"http://127.0.0.1:{omni_port}"}
    wait_up(urls["ddx-omni"])
    sample = httpx.post(f"{urls['ddx-omni']}/v1/chat/completions", content=BODY,
                        headers={"content-type": "application/json"}).text
    bare = subprocess.Popen([sys.executable, str(HERE / "bare_app.py"), str(bare_port), sample, log_level])
    urls["bare FastAPI"] = f"http://127.0.0.1:{bare_port}"
    wait_up(urls["bare FastAPI"])
    return [omni, bare], urls


def wrk(url: str, seconds: int, connections: int, script: Path) -> tuple[float, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"{url}/v1/chat/completions"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out).groups()
    return rps, float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--port", type=int, default=0, help="ddx-omni's port, the bare app's is the next (default: free)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)
        procs, urls = start_servers(args.log_level, Path(tmp), args.port)
        try:
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
            for _ in range(args.rounds):
                for name, url in urls.items():
                    runs[name].append(wrk(url, args.seconds, args.connections, script))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    report(runs, args)


def report(runs: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> None:
    omni, bare = runs["ddx-omni"], runs["bare FastAPI"]
    ratios = [o[0] / b[0] for o, b in zip(omni, bare, strict=True)]
    print(f"wrk -c{args.connections} -d{args.seconds}s, {args.rounds} interleaved rounds, log level {args.log_level}")
    print("| server | req/s (median) | p99 ms (median) |\n|---|---|---|")
    for name, rows in runs.items():
        print(f"| {name} | {statistics.median(r[0] for r in rows):,.0f} | {statistics.median(r[1] for r in rows):.1f} |")
    print(f"paired req/s ratio ddx-omni / bare: median {statistics.median(ratios):.2f} "
          f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
