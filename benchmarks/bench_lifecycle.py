"""Lifecycle benchmark: what `ddx-omni start/status/stop` cost on top of the server itself.

Each round, in rotating order:
  serve      `python -m ddx_omni.cli serve` in the foreground, polled until /health says ok, then SIGTERM
  start      `ddx-omni start` until it exits 0 (spawn, readiness wait), then `status`, then `stop`
  force      `ddx-omni start`, then `stop --force`
Every figure is the median over the rounds (wall clock of the CLI process as a user sees it). All runs use an
empty config, a fresh free port, the sphinx STT engine and their own XDG_STATE_HOME under a temp dir.

    .venv/bin/python benchmarks/bench_lifecycle.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from harness import free_port


class Env:
    def __init__(self, root: Path) -> None:
        self.config = root / "empty.toml"
        self.config.write_text("")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DDX_")}
        self.env.update(XDG_STATE_HOME=str(root / "state"), DDX_STT__ENGINE="sphinx",
                        DDX_RESPONSES__DB_PATH=str(root / "responses.db"))

    def cli(self, *args: str) -> float:
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "ddx_omni.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args} exited {done.returncode}: {done.stderr}")
        return time.perf_counter() - began


def bench_serve(env: Env) -> dict[str, float]:
    port = free_port()
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--config", str(env.config),
                             "--port", str(port)], env=env.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["status"] == "ok":
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    ready = time.perf_counter() - began
    began = time.perf_counter()
    proc.terminate()
    proc.wait(60)
    stopped = time.perf_counter() - began
    os.killpg(proc.pid, 9) if _group_alive(proc.pid) else None  # decoder workers the server left behind
    return {"ready": ready, "stop": stopped}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False


def bench_start(env: Env) -> dict[str, float]:
    port = str(free_port())
    return {"ready": env.cli("start", "--config", str(env.config), "--port", port),
            "status": env.cli("status"), "stop": env.cli("stop")}


def bench_force(env: Env) -> dict[str, float]:
    port = str(free_port())
    return {"ready": env.cli("start", "--config", str(env.config), "--port", port),
            "stop": env.cli("stop", "--force")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    peers: dict[str, Callable[[Env], dict[str, float]]] = {
        "serve (foreground, no lifecycle)": bench_serve, "start / status / stop": bench_start,
        "start / stop --force": bench_force}
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in peers}
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp))
        names = list(peers)
        for round_no in range(args.rounds):
            for name in names[round_no % len(names):] + names[:round_no % len(names)]:
                for key, value in peers[name](env).items():
                    samples[name].setdefault(key, []).append(value)
    print(f"rounds: {args.rounds}; medians in seconds (wall clock of the command)\n")
    print("| run | ready (start → exit / first ok health) | status | stop |")
    print("|---|---|---|---|")
    for name, figures in samples.items():
        cell = {key: f"{statistics.median(values):.2f}" for key, values in figures.items()}
        print(f"| {name} | {cell['ready']} | {cell.get('status', '–')} | {cell['stop']} |")


if __name__ == "__main__":
    main()
