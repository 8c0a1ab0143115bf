"""What the benchmark scripts share: a free port, a mock-mode `ddx-omni serve` to measure, /health probes
taken while something else runs, and percentiles."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Return once `url`/health answers 200; kill `process` and raise if it does not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{url} did not start")


def start_mock_server(workdir: Path, port: int = 0, env: dict[str, str] | None = None,
                      log_level: str = "warning") -> tuple[subprocess.Popen[bytes], str]:
    """`ddx-omni serve --mock` in its own process, state under `workdir`, none of this shell's DDX_ settings
    (plus `env`); returns once /health answers."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DDX_")}
    environ.update({"HOME": str(workdir), "XDG_STATE_HOME": str(workdir),
                    "DDX_RESPONSES__DB_PATH": str(workdir / "responses.db"), **(env or {})})
    process = subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--port", str(port), "--mock",
                                "--log-level", log_level], cwd=workdir, env=environ,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    return process, url


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def probing_health(url: str, into: list[float], every_s: float = 0.05) -> Iterator[None]:
    """While the block runs, GET `url`/health every `every_s` from a thread; latencies (ms) go to `into`."""
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=10) as client:
            while not done.is_set():
                tic = time.perf_counter()
                client.get(f"{url}/health")
                into.append((time.perf_counter() - tic) * 1000)
                time.sleep(every_s)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 < q ≤ 1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
