"""`ddx-omni serve` as a real process: serves /health and /metrics, logs each request with its id."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from .conftest import free_port


def test_serve_answers_health_and_metrics_and_logs_request_ids(tmp_path):
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DDX_")},
           "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), "DDX_STT__ENGINE": "sphinx"}
    proc = subprocess.Popen([sys.executable, "-m", "ddx_omni.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", headers={"X-Request-ID": "serve-test-1"})
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["version"]
        assert health.headers["x-request-id"] == "serve-test-1"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.status_code == 200 and 'route="/health"' in metrics.text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal as its exit status
    assert proc.returncode in (0, -15) and "Application shutdown complete" in out, out
    access = [line for line in out.splitlines() if "GET /health" in line]
    assert access and all("[serve-test-1]" in line for line in access), out
    assert "authentication is bypassed" in out
