"""Process lifecycle of a detached server: PID file, spawn, readiness wait, stop, status, stale-PID cleanup.

`ddx-omni start` runs `python -m ddx_omni.cli serve …` in a new session, so it outlives the terminal, and
records it in `$XDG_STATE_HOME/ddx-omni/server.pid` (the PID alone, so `kill $(cat server.pid)` works) plus
`server.json` beside it (host, port, the process's start time and the flags, for `status` and `restart`).
A recorded PID is trusted only while the process it names is still ours: same start time and a command
line that runs `ddx_omni.cli serve`. Anything else is a stale record, reported and removed, never signalled.
The server process itself runs `run_server`: uvicorn whose SIGTERM shutdown first ends live sessions (1001).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn

from .core.settings import state_dir

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0  # above serve's 10 s graceful window, so a graceful stop is not cut short
KILL_WAIT_S = 5.0
GROUP_GRACE_S = 1.0  # after the server exits, its helpers get this long to follow before they are signalled
LOG_ROTATE_BYTES = 10 * 1024 * 1024


class ExitCode(IntEnum):
    """Every exit status of the CLI, in one place (shown by `--help` and docs/operations.md)."""

    OK = 0
    FAILURE = 1  # already running, the server exited during start, a signal refused, /health unreachable
    BAD_CONFIG = 2  # a setting, flag or config file is invalid
    NOT_RUNNING = 3  # stop/status found no server of ours (as LSB `status` does)
    START_TIMEOUT = 4  # the server did not become ready within --timeout
    PORT_IN_USE = 5  # the port (or address) cannot be bound
    INTERRUPTED = 130  # Ctrl-C while start waited (the shell's convention for SIGINT)


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success (status: the server is running and answers /health)",
    ExitCode.FAILURE: "failure: already running, exited during start, cannot signal, or /health unreachable",
    ExitCode.BAD_CONFIG: "invalid configuration (setting, flag or config file)",
    ExitCode.NOT_RUNNING: "no server of ours is running (a stale PID file is cleaned on the way)",
    ExitCode.START_TIMEOUT: "the server did not become ready within --timeout",
    ExitCode.PORT_IN_USE: "the port or address cannot be bound",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C) while start waited; the server keeps starting",
}


class LifecycleError(Exception):
    """A user-facing failure in the seed's form: what went wrong, why, and how to fix it."""

    def __init__(self, code: ExitCode, what: str, why: str, fixes: list[str] | None = None) -> None:
        super().__init__(what)
        self.code, self.what, self.why, self.fixes = code, what, why, fixes or []

    def render(self) -> str:
        lines = [f"Error: {self.what}", "", f"Cause: {self.why}"]
        if self.fixes:
            lines += ["", "To fix:"] + [f"  {n}. {fix}" for n, fix in enumerate(self.fixes, 1)]
        return "\n".join(lines)


# --- where things live -------------------------------------------------------------------------------

def pid_path() -> Path:
    return state_dir() / "server.pid"


def record_path() -> Path:
    return state_dir() / "server.json"


def log_path() -> Path:
    return state_dir() / "logs" / "server.log"


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    """Serialise start/stop/restart, so two concurrent `start`s cannot both spawn."""
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / "lifecycle.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- the record of a started server ----------------------------------------------------------------------

@dataclass
class ServerRecord:
    pid: int
    host: str
    port: int
    started_at: float  # wall clock, for humans
    create_time: float | None  # psutil's start time of `pid`: tells our process from a reused PID
    config: str | None
    flags: dict[str, Any] = field(default_factory=dict)  # the start flags, replayed by `restart`
    log: str = ""

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)


def write_record(record: ServerRecord) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    _write_atomic(record_path(), json.dumps(asdict(record), indent=2) + "\n")
    _write_atomic(pid_path(), f"{record.pid}\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_record() -> ServerRecord | None:
    """The recorded server, or None without a PID file. A hand-written PID file without server.json is read too."""
    try:
        pid = int(pid_path().read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pid = -1  # unreadable or not a number: a stale file like any other
    try:
        data = json.loads(record_path().read_text())
        if data.get("pid") == pid:
            return ServerRecord(**data)
    except (OSError, ValueError, TypeError):
        pass
    return ServerRecord(pid=pid, host="127.0.0.1", port=0, started_at=0.0, create_time=None, config=None)


def clear_record() -> None:
    for path in (pid_path(), record_path()):
        path.unlink(missing_ok=True)


# --- is the recorded PID still our server? ---------------------------------------------------------------

def is_serve_cmdline(cmdline: list[str]) -> bool:
    """`python -m ddx_omni.cli serve …` (what start spawns) or `ddx-omni serve …`."""
    joined = [Path(part).name for part in cmdline]
    return "serve" in cmdline and ("ddx_omni.cli" in cmdline or "ddx-omni" in joined)


def live_process(record: ServerRecord) -> tuple[psutil.Process | None, str]:
    """(process, "") when the record names our running server; else (None, why the record is stale)."""
    if record.pid <= 0:
        return None, "the PID file does not hold a process id"
    try:
        proc = psutil.Process(record.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None, f"process {record.pid} has exited"
        cmdline = proc.cmdline()
        create_time = proc.create_time()
    except psutil.NoSuchProcess:
        return None, f"process {record.pid} no longer exists"
    except psutil.AccessDenied:
        return None, f"process {record.pid} belongs to another user, so it is not ours"
    if not is_serve_cmdline(cmdline):
        shown = " ".join(cmdline)[:120] or "(no command line)"
        return None, f"PID {record.pid} now belongs to another program: {shown}"
    if record.create_time is not None and abs(create_time - record.create_time) > 1.0:
        return None, f"PID {record.pid} is a ddx-omni server started at another time, not the one recorded"
    return proc, ""


def discard_stale() -> str | None:
    """Remove a record that names no live server of ours; return the reason, or None if nothing was stale."""
    record = read_record()
    if record is None:
        return None
    proc, why = live_process(record)
    if proc is not None:
        return None
    clear_record()
    return f"Removed a stale PID file ({pid_path()}): {why}."


# --- addresses and ports ------------------------------------------------------------------------------

def connect_host(host: str) -> str:
    """Where a local client reaches a server bound to `host` (wildcards → loopback)."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def base_url(host: str, port: int) -> str:
    target = connect_host(host)
    return f"http://[{target}]:{port}" if ":" in target else f"http://{target}:{port}"


def _try_bind(host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def port_holder(port: int) -> str | None:
    """Best effort: 'name (PID n): cmdline' of the local process listening on `port`."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                proc = psutil.Process(conn.pid)
                return f"{proc.name()} (PID {conn.pid}): {' '.join(proc.cmdline())[:100]}"
            except psutil.Error:
                return f"PID {conn.pid}"
    return None


def next_free_port(host: str, port: int) -> int | None:
    for candidate in range(port + 1, min(port + 100, 65536)):
        if _try_bind(host, candidate) is None:
            return candidate
    return None


def check_bindable(host: str, port: int) -> None:
    """Raise the what/why/how-to-fix error when `host:port` cannot be bound."""
    err = _try_bind(host, port)
    if err is None:
        return
    what = f"cannot start ddx-omni on {host}:{port}."
    if err.errno == errno.EADDRINUSE:
        holder = port_holder(port)
        free = next_free_port(host, port)
        raise LifecycleError(
            ExitCode.PORT_IN_USE, what,
            f"port {port} is already in use" + (f", by {holder}." if holder else " by another program."),
            [f"See what holds it: ss -ltnp 'sport = :{port}'   (or: lsof -i :{port})",
             "Stop that program, or",
             f"Pick another port: ddx-omni start --port {free or port + 1}"
             + "   (or set DDX_SERVER__PORT, or [server].port in config.toml)"])
    if err.errno == errno.EACCES:
        raise LifecycleError(ExitCode.PORT_IN_USE, what,
                             f"binding port {port} needs privileges (ports below 1024 are reserved for root).",
                             ["Use a port of 1024 or above: ddx-omni start --port 4250"])
    raise LifecycleError(ExitCode.PORT_IN_USE, what, f"the address {host} cannot be bound: {err.strerror}.",
                         ["Use an address of this machine: --host 127.0.0.1 (local only) or --host 0.0.0.0 (all)"])


# --- health --------------------------------------------------------------------------------------------

def fetch_health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) and "status" in body else None


def loading_components(health: dict[str, Any]) -> list[str]:
    components = health.get("components") or {}
    return [name for name, comp in components.items() if isinstance(comp, dict) and comp.get("state") == "loading"]


def describe_progress(health: dict[str, Any] | None, elapsed: float) -> str:
    """The spinner line: what the server is doing while start waits."""
    if health is None:
        return f"Starting ddx-omni… waiting for /health ({elapsed:.0f} s)"
    loading = loading_components(health)
    if not loading:
        return f"Server ready ({elapsed:.0f} s)"
    components = health.get("components") or {}
    llm = components.get("llm") or {}
    if "llm" in loading:
        return f"Server up; loading model {llm.get('model')}: {llm.get('model_state', 'loading')} ({elapsed:.0f} s)"
    what = ", ".join(f"{name} ({components[name].get('engine') or components[name].get('model') or 'engine'})"
                     for name in loading)
    return f"Server up; model {llm.get('model')}: {llm.get('model_state', '?')}; loading {what} ({elapsed:.0f} s)"


def component_problems(health: dict[str, Any]) -> list[str]:
    """'name: error' for every component that is not ready (failed, or idle), for start/status to show."""
    problems = []
    for name, comp in (health.get("components") or {}).items():
        if isinstance(comp, dict) and comp.get("state") in ("failed", "idle"):
            error = " ".join(str(comp.get("model_error") or comp.get("error") or "no error given").split())
            problems.append(f"{name}: {comp['state']} — {error[:200]}")
    return problems


# --- start ---------------------------------------------------------------------------------------------

@dataclass
class StartResult:
    record: ServerRecord
    elapsed_s: float
    health: dict[str, Any]
    notes: list[str]


def serve_command(host: str, port: int, config: Path | None, flags: dict[str, Any]) -> list[str]:
    """The detached server's argv: the flags given to start, with host and port pinned to what was checked."""
    args = [sys.executable, "-m", "ddx_omni.cli", "serve", "--host", host, "--port", str(port)]
    if config is not None:
        args += ["--config", str(config)]
    for name, value in flags.items():
        if value is None or name in ("host", "port"):
            continue
        option = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(option if value else {"--real": "--mock"}.get(option, f"--no-{name.replace('_', '-')}"))
        else:
            args += [option, str(value)]
    return args


def _open_log() -> Any:
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > LOG_ROTATE_BYTES:
        os.replace(path, path.with_suffix(".log.1"))
    return open(path, "ab")


LOG_HEADER = "=== "


def log_tail(lines: int = 15) -> str:
    """The last lines the latest start wrote (older runs, before its header line, are left out)."""
    try:
        text = log_path().read_text(errors="replace")
    except OSError:
        return ""
    latest = text.splitlines()
    headers = [n for n, line in enumerate(latest) if line.startswith(LOG_HEADER)]
    return "\n".join(latest[headers[-1] + 1 if headers else 0:][-lines:])


def spawn(host: str, port: int, config: Path | None,
          flags: dict[str, Any]) -> tuple[subprocess.Popen[bytes], ServerRecord]:
    cmd = serve_command(host, port, config, flags)
    with _open_log() as log:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"\n{LOG_HEADER}{stamp} ddx-omni start: {' '.join(cmd)}\n".encode())
        log.flush()
        # a new session: the server survives the terminal (no SIGHUP) and Ctrl-C in it
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        create_time: float | None = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time = None
    record = ServerRecord(pid=proc.pid, host=host, port=port, started_at=time.time(), create_time=create_time,
                          config=str(config) if config else None, flags=flags, log=str(log_path()))
    write_record(record)
    return proc, record


def start(host: str, port: int, config: Path | None, flags: dict[str, Any], timeout: float = START_TIMEOUT_S,
          progress: Callable[[str], None] = lambda _: None) -> StartResult:
    """Start the detached server and wait until /health answers with nothing loading."""
    with state_lock():
        notes = [note] if (note := discard_stale()) else []
        record = read_record()
        if record is not None:
            raise LifecycleError(
                ExitCode.FAILURE, f"ddx-omni is already running (PID {record.pid}) at {record.url}.",
                "a server started earlier is still running; only one is managed at a time.",
                ["Use it as it is: ddx-omni status", "Or restart it with new options: ddx-omni restart …",
                 "Or stop it first: ddx-omni stop"])
        check_bindable(host, port)
        proc, record = spawn(host, port, config, flags)
    return StartResult(record, *_await_ready(proc, record, timeout, progress), notes)


def _await_ready(proc: subprocess.Popen[bytes], record: ServerRecord, timeout: float,
                 progress: Callable[[str], None]) -> tuple[float, dict[str, Any]]:
    began = time.monotonic()
    health: dict[str, Any] | None = None
    while True:
        elapsed = time.monotonic() - began
        if proc.poll() is not None:
            clear_record()
            raise _exited_during_start(proc.returncode, record)
        health = fetch_health(record.url, timeout=2.0)
        progress(describe_progress(health, elapsed))
        if health is not None and not loading_components(health):
            return elapsed, health
        if elapsed > timeout:
            raise _start_timed_out(proc, record, health, timeout)
        time.sleep(0.2)


def _exited_during_start(returncode: int, record: ServerRecord) -> LifecycleError:
    tail = log_tail()
    if "address already in use" in tail.lower():
        return LifecycleError(ExitCode.PORT_IN_USE, f"cannot start ddx-omni on {record.host}:{record.port}.",
                              f"another program took port {record.port} while the server was starting.",
                              [f"See what holds it: ss -ltnp 'sport = :{record.port}'",
                               f"Pick another port: ddx-omni start --port {record.port + 1}"])
    code = ExitCode.BAD_CONFIG if returncode == ExitCode.BAD_CONFIG else ExitCode.FAILURE
    return LifecycleError(code, f"the server exited during startup (exit code {returncode}).",
                          f"see the end of its log ({log_path()}):\n\n{_indent(tail)}",
                          [f"Read the whole log: less {log_path()}",
                           "Run it in the foreground to watch it fail: ddx-omni serve (same options)"])


def _start_timed_out(proc: subprocess.Popen[bytes], record: ServerRecord, health: dict[str, Any] | None,
                     timeout: float) -> LifecycleError:
    if health is not None:  # up and still loading a model: leave it to finish rather than throw the work away
        return LifecycleError(
            ExitCode.START_TIMEOUT, f"ddx-omni did not become ready within {timeout:g} s.",
            f"the server runs (PID {record.pid}, {record.url}) but still loads: "
            f"{', '.join(loading_components(health))}. It keeps loading in the background.",
            ["Watch it: ddx-omni status", f"Next time wait longer: ddx-omni start --timeout {timeout * 4:g}",
             "Or give up on it: ddx-omni stop"])
    _terminate(psutil.Process(proc.pid), force=False, timeout=KILL_WAIT_S)
    end_group(proc.pid)  # spawned with a new session: the group is the server's
    proc.poll()  # our child: reap it
    clear_record()
    return LifecycleError(
        ExitCode.START_TIMEOUT, f"ddx-omni did not answer /health within {timeout:g} s; it was stopped.",
        f"the server never answered on {record.url}. End of its log ({log_path()}):\n\n{_indent(log_tail())}",
        [f"Allow more time: ddx-omni start --timeout {max(timeout * 4, 60):g}",
         "Run it in the foreground to see where it hangs: ddx-omni serve (same options)"])


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) or "    (the log is empty)"


# --- stop ----------------------------------------------------------------------------------------------

@dataclass
class StopResult:
    pid: int
    graceful: bool
    elapsed_s: float
    leftovers: int = 0  # helper processes (e.g. decoder workers) still running after the server exited


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes in the process group `pgid` (start puts the server and its helpers in their own)."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def end_group(pgid: int) -> int:
    """End what the server left behind in its group (workers that outlived it): SIGTERM, then SIGKILL."""
    left = group_members(pgid)
    if not left or _wait_exit(left, GROUP_GRACE_S):  # helpers that exit on their own, as they should
        return 0
    left = [proc for proc in left if not _has_exited(proc)]
    terminate_all(left)
    return len(left)


def terminate_all(procs: list[psutil.Process]) -> None:
    """SIGTERM each, then SIGKILL whatever has not exited after KILL_WAIT_S."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    if procs and not _wait_exit(procs, KILL_WAIT_S):
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _wait_exit(procs, KILL_WAIT_S)


def _has_exited(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_exit(procs: list[psutil.Process], timeout: float) -> bool:
    """Until every process has exited. A zombie counts: the detached server is not our child, and reaping it
    is up to init, which may take its time (psutil's wait would wait for the reaping)."""
    deadline = time.monotonic() + timeout
    while not all(_has_exited(p) for p in procs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _terminate(proc: psutil.Process, force: bool, timeout: float) -> bool:
    """SIGTERM and wait up to `timeout`, then SIGKILL (at once with force). True when it ended gracefully."""
    if not force:
        proc.send_signal(signal.SIGTERM)
        if _wait_exit([proc], timeout):
            return True
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        children = []
    for victim in (proc, *children):
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.kill()
    _wait_exit([proc, *children], KILL_WAIT_S)
    return False


def stop(force: bool = False, timeout: float = STOP_TIMEOUT_S) -> StopResult:
    with state_lock():
        record = read_record()
        if record is None:
            raise not_running()
        proc, why = live_process(record)
        if proc is None:
            clear_record()
            raise LifecycleError(ExitCode.NOT_RUNNING, "ddx-omni is not running; nothing was signalled.",
                                 f"the PID file was stale ({why}); it has been removed.",
                                 ["Start it: ddx-omni start"])
        began = time.monotonic()
        # only a group this server leads (start gave it a new session) is ours to clean up after it
        own_group = _leads_group(proc)
        try:
            graceful = _terminate(proc, force, timeout)
        except psutil.NoSuchProcess:
            graceful = True  # it ended on its own between the check and the signal
        except psutil.AccessDenied:
            raise LifecycleError(ExitCode.FAILURE, f"cannot signal the server (PID {record.pid}).",
                                 "this user is not allowed to signal that process.",
                                 ["Run the command as the user that started the server"]) from None
        if not _has_exited(proc):
            raise LifecycleError(ExitCode.FAILURE, f"the server (PID {record.pid}) did not end, even after SIGKILL.",
                                 "the process is stuck in the kernel (uninterruptible I/O).",
                                 [f"Check it: ps -o pid,stat,cmd -p {record.pid}"])
        leftovers = end_group(record.pid) if own_group else 0
        clear_record()
        return StopResult(record.pid, graceful, time.monotonic() - began, leftovers)


def _leads_group(proc: psutil.Process) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except OSError:
        return False


def not_running() -> LifecycleError:
    return LifecycleError(ExitCode.NOT_RUNNING, "ddx-omni is not running.",
                          f"there is no PID file at {pid_path()}.", ["Start it: ddx-omni start"])


# --- status --------------------------------------------------------------------------------------------

def status(health_timeout: float = 3.0, configured_url: str | None = None) -> tuple[ExitCode, dict[str, Any]]:
    """Everything `ddx-omni status` shows, as one JSON-ready dict, and the exit code it implies.

    With no server of ours, `configured_url` (where the settings say a server would listen) is probed, so that
    a server run in the foreground (`ddx-omni serve`, `make run`) is pointed out rather than missed."""
    info: dict[str, Any] = {"running": False, "pid": None, "host": None, "port": None, "url": None,
                            "uptime_s": None, "health": None, "model": None, "model_state": None,
                            "stt_engine": None, "pid_file": str(pid_path()), "log_file": str(log_path())}
    stale = discard_stale()
    if stale:
        info["stale_pid_file"] = stale
    record = read_record()
    if record is None:
        unmanaged = fetch_health(configured_url, timeout=1.0) if configured_url else None
        if unmanaged is not None:
            info["unmanaged"] = {"url": configured_url, "health": unmanaged.get("status"),
                                 "version": unmanaged.get("version")}
        return ExitCode.NOT_RUNNING, info
    proc, _ = live_process(record)
    info.update(running=True, pid=record.pid, host=record.host, port=record.port, url=record.url,
                uptime_s=round(time.time() - proc.create_time(), 1) if proc else None)
    health = fetch_health(record.url, timeout=health_timeout)
    if health is None:
        info["health"] = "unreachable"
        return ExitCode.FAILURE, info
    components = health.get("components") or {}
    llm, stt = components.get("llm") or {}, components.get("stt") or {}
    info.update(health=health.get("status"), version=health.get("version"), model=llm.get("model"),
                model_state=llm.get("model_state", llm.get("state")), llm_mode=llm.get("mode"),
                stt_engine=stt.get("engine"), stt_state=stt.get("state"),
                components={name: comp.get("state") for name, comp in components.items() if isinstance(comp, dict)},
                problems=component_problems(health))
    return ExitCode.OK, info


# --- the server process itself ----------------------------------------------------------------------------

GRACEFUL_SHUTDOWN_S = 10  # in-flight requests get this long after SIGTERM (ddx-omni stop waits longer)
GOING_AWAY_TIMEOUT_S = 5.0


class GoingAwayServer(uvicorn.Server):
    """uvicorn, but on SIGTERM the components with live sessions (`going_away()`) end them first.

    uvicorn's own shutdown closes every open WebSocket with 1012 (service restart); a client of a stopping
    server should get 1001 (going away) from the session itself, with its final frames where it has any.
    """

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        hooks = [component.going_away() for component in self.app.state.components.values()
                 if callable(getattr(component, "going_away", None))]
        try:
            await asyncio.wait_for(asyncio.gather(*hooks, return_exceptions=True), GOING_AWAY_TIMEOUT_S)
        except TimeoutError:
            logging.getLogger("ddx_omni").warning("live sessions did not close within %s s", GOING_AWAY_TIMEOUT_S)
        await super().shutdown(sockets)  # drains requests, then stops the components
        # Helper processes a component left running (a decoder pool…) would outlive us as orphans holding our
        # stdout; uvicorn re-raises SIGTERM right after this, so this is the last moment to end them.
        await asyncio.to_thread(end_children)


def _is_resource_tracker(proc: psutil.Process) -> bool:
    try:
        return "multiprocessing.resource_tracker" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def end_children() -> int:
    """End this process's remaining child processes: SIGTERM, then SIGKILL. Returns how many there were.

    multiprocessing's resource tracker is left alone: it ignores SIGTERM by design, exits by itself once this
    process has, and on the way removes the semaphores the workers left in /dev/shm."""
    children = [c for c in psutil.Process().children(recursive=True) if not _is_resource_tracker(c)]
    terminate_all(children)
    if children:
        logging.getLogger("ddx_omni").info("ended %d helper process(es) left running at shutdown", len(children))
    return len(children)


def run_server(app: Any, host: str, port: int, log_level: str) -> None:
    """What `serve` (and so the detached server) runs: uvicorn with the going-away shutdown."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level=log_level,
                            ws_max_size=16 * 1024 * 1024, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    GoingAwayServer(config, app).run()
