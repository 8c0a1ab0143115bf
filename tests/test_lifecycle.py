"""`ddx-omni start/stop/restart/status` as a user runs them: real CLI processes, real detached servers.

Every test points XDG_STATE_HOME at its own tmp dir (never the real ~/.local/state), uses an empty config
file and a free port, and kills whatever server it left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from ddx_omni.lifecycle import ExitCode, end_group, group_members

from .conftest import free_port

CLI_TIMEOUT_S = 90


class Cli:
    """Runs `python -m ddx_omni.cli …` with an isolated state dir, config and environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.config = tmp_path / "empty.toml"
        self.config.write_text("")
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DDX_")}
        self.env.update(XDG_STATE_HOME=str(self.state), DDX_RESPONSES__DB_PATH=str(tmp_path / "responses.db"))

    @property
    def pid_file(self) -> Path:
        return self.state / "ddx-omni" / "server.pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        if args[0] in ("start", "restart") and "--config" not in args:
            args = (*args, "--config", str(self.config), "--port", str(self.port))
        return subprocess.run([sys.executable, "-m", "ddx_omni.cli", *args], env=self.env, text=True, check=False,
                              capture_output=True, timeout=CLI_TIMEOUT_S)

    def pid(self) -> int:
        return int(self.pid_file.read_text())


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path)
    yield runner
    # never leave a detached server (or its helpers) behind, whatever the test did
    try:
        pid = runner.pid()
        if "ddx_omni.cli" in psutil.Process(pid).cmdline():
            psutil.Process(pid).kill()
            end_group(pid)
    except (OSError, ValueError, psutil.Error):
        pass


@pytest.fixture
def foreign_process() -> Iterator[psutil.Process]:
    """A live process that is not ddx-omni (what a reused PID points at)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield psutil.Process(proc.pid)
    proc.kill()
    proc.wait(10)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_start_status_double_start_stop(cli: Cli) -> None:
    started = cli("start")
    assert started.returncode == ExitCode.OK, started.stderr
    assert cli.url in started.stdout
    pid = cli.pid()
    assert health(cli.url)["status"] in ("ok", "degraded")
    assert (cli.state / "ddx-omni" / "logs" / "server.log").read_text().count("Uvicorn running") == 1

    status = cli("status", "--json")
    assert status.returncode == ExitCode.OK
    info = json.loads(status.stdout)
    assert info["running"] is True and info["pid"] == pid and info["port"] == cli.port
    assert info["health"] == health(cli.url)["status"]
    assert info["model"] == health(cli.url)["components"]["llm"]["model"]
    assert info["uptime_s"] >= 0
    text = cli("status")
    assert text.returncode == ExitCode.OK and str(pid) in text.stdout and cli.url in text.stdout

    again = cli("start")
    assert again.returncode == ExitCode.FAILURE
    assert "already running" in again.stderr and str(pid) in again.stderr and cli.url in again.stderr
    assert cli.pid() == pid  # the running server's record is untouched

    stopped = cli("stop")
    assert stopped.returncode == ExitCode.OK, stopped.stderr
    assert "gracefully" in stopped.stdout
    assert is_gone(pid) and not cli.pid_file.exists()
    with pytest.raises(httpx.ConnectError):
        health(cli.url)
    assert cli("status").returncode == ExitCode.NOT_RUNNING
    assert cli("stop").returncode == ExitCode.NOT_RUNNING


def test_restart_keeps_options_and_force_stop_kills(cli: Cli) -> None:
    assert cli("start", "--log-level", "debug").returncode == ExitCode.OK
    first = cli.pid()
    restarted = cli("restart")
    assert restarted.returncode == ExitCode.OK, restarted.stderr
    second = cli.pid()
    assert second != first and is_gone(first)
    assert "--log-level debug" in " ".join(psutil.Process(second).cmdline())  # the start's flags came back
    assert health(cli.url)["status"] in ("ok", "degraded")

    # --force: SIGKILL at once, so the server gets no chance to log its graceful shutdown
    forced = cli("stop", "--force")
    assert forced.returncode == ExitCode.OK and "killed" in forced.stdout
    assert is_gone(second) and not cli.pid_file.exists()
    log = (cli.state / "ddx-omni" / "logs" / "server.log").read_text()
    assert log.count("Finished server process") == 1  # the first server's graceful exit only


def test_stale_pid_file_of_a_dead_process_is_reported_and_cleaned(cli: Cli) -> None:
    cli.pid_file.parent.mkdir(parents=True)
    cli.pid_file.write_text(f"{dead_pid()}\n")
    status = cli("status")
    assert status.returncode == ExitCode.NOT_RUNNING
    assert "stale PID file" in status.stdout and "no longer exists" in status.stdout
    assert not cli.pid_file.exists()

    cli.pid_file.write_text(f"{dead_pid()}\n")
    started = cli("start")  # a stale record does not block a start
    assert started.returncode == ExitCode.OK, started.stderr
    assert "stale PID file" in started.stdout
    assert cli.pid() != 0 and health(cli.url)["status"]
    assert cli("stop").returncode == ExitCode.OK


def test_pid_reused_by_another_program_is_never_signalled(cli: Cli, foreign_process: psutil.Process) -> None:
    cli.pid_file.parent.mkdir(parents=True)
    cli.pid_file.write_text(f"{foreign_process.pid}\n")
    stopped = cli("stop")
    assert stopped.returncode == ExitCode.NOT_RUNNING
    assert "another program" in stopped.stderr and "nothing was signalled" in stopped.stderr
    assert foreign_process.is_running() and foreign_process.status() != psutil.STATUS_ZOMBIE
    assert not cli.pid_file.exists()

    cli.pid_file.write_text(f"{foreign_process.pid}\n")
    status = cli("status", "--json")
    info = json.loads(status.stdout)
    assert status.returncode == ExitCode.NOT_RUNNING and info["running"] is False
    assert "another program" in info["stale_pid_file"]
    assert foreign_process.is_running()


def test_port_in_use_names_the_port_and_the_fix(cli: Cli) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", cli.port))
        holder.listen()
        result = cli("start")
    assert result.returncode == ExitCode.PORT_IN_USE
    assert f"port {cli.port} is already in use" in result.stderr
    assert f"ss -ltnp 'sport = :{cli.port}'" in result.stderr and "--port" in result.stderr
    assert str(os.getpid()) in result.stderr  # the holder (this test process) is named
    assert not cli.pid_file.exists() and not (cli.state / "ddx-omni" / "logs").exists()  # nothing was spawned


def test_start_timeout_stops_the_unready_server(cli: Cli, tmp_path: Path) -> None:
    # a server that hangs before it serves: the spawned `serve` sleeps in sitecustomize (the CLI itself does not)
    hook = tmp_path / "hang"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import sys, time\nif 'serve' in sys.orig_argv:\n    time.sleep(60)\n")
    cli.env["PYTHONPATH"] = str(hook)
    result = cli("start", "--timeout", "1")
    assert result.returncode == ExitCode.START_TIMEOUT
    assert "did not answer /health within 1 s" in result.stderr and "--timeout" in result.stderr
    assert not cli.pid_file.exists()
    spawned = [p for p in psutil.process_iter(["cmdline"]) if str(cli.port) in " ".join(p.info["cmdline"] or [])
               and "ddx_omni.cli" in (p.info["cmdline"] or [])]
    assert all(is_gone(p.pid) for p in spawned)


def test_bad_config_exits_2_without_spawning(cli: Cli) -> None:
    cli.config.write_text("[server]\nlog_level = 'loud'\n")
    result = cli("start")
    assert result.returncode == ExitCode.BAD_CONFIG
    assert "server.log_level" in result.stderr
    assert not cli.pid_file.exists()


def test_stop_waits_for_graceful_exit_then_sigkills_after_timeout(cli: Cli) -> None:
    assert cli("start").returncode == ExitCode.OK
    pid = cli.pid()
    # A server that ignores SIGTERM (stopped with SIGSTOP it cannot react) must still be ended by the timeout.
    os.kill(pid, signal.SIGSTOP)
    began = time.monotonic()
    result = cli("stop", "--timeout", "1")
    assert result.returncode == ExitCode.OK
    assert "killed after 1 s" in result.stdout
    assert time.monotonic() - began >= 1.0
    assert wait_until(lambda: is_gone(pid)) and not cli.pid_file.exists()


def test_stop_ends_live_speech_sessions_with_1001(cli: Cli) -> None:
    import asyncio

    import websockets

    assert cli("start", "--stt-engine", "sphinx").returncode == ExitCode.OK
    pid = cli.pid()

    async def session_during_stop() -> tuple[int | None, subprocess.CompletedProcess[str]]:
        url = f"ws://127.0.0.1:{cli.port}/v1/listen/dg?encoding=linear16&sample_rate=16000&channels=1"
        async with websockets.connect(url, open_timeout=10) as ws:
            await ws.send(b"\0" * 2048)
            stopping = asyncio.create_task(asyncio.to_thread(cli, "stop"))
            try:
                async with asyncio.timeout(30):
                    async for _ in ws:
                        pass
            except websockets.ConnectionClosed:
                pass
            return ws.close_code, await stopping

    close_code, stopped = asyncio.run(session_during_stop())
    assert close_code == 1001  # going away, from the session, not uvicorn's blanket 1012
    assert stopped.returncode == ExitCode.OK and "gracefully" in stopped.stdout
    assert group_members(pid) == []  # nothing the server started (decoder workers…) outlives it


def test_status_points_out_a_foreground_server_it_does_not_manage(cli: Cli, server_factory: Callable[..., str]) -> None:
    url = server_factory()
    cli.env["DDX_SERVER__PORT"] = url.rsplit(":", 1)[1]  # where the settings say the server listens
    result = cli("status")
    assert result.returncode == ExitCode.NOT_RUNNING
    assert f"not started by `ddx-omni start` answers at {url}" in result.stdout
    info = json.loads(cli("status", "--json").stdout)
    assert info["running"] is False and info["unmanaged"]["url"] == url
