"""The sandbox a container's kernel runs in: bubblewrap namespaces, read-only system binds, one writable /mnt/data.

`Sandbox.argv` builds the command; `Sandbox.probe` checks once at start that it can really be built here (a
missing bwrap, a Docker that masks /proc…) and says why not and how to fix it; `Kernel` is one running kernel
(start, execute with a wall-clock timeout, kill). Isolation, all from the operating system:

- new network, PID, IPC, UTS (and cgroup) namespaces: only a loopback of its own, only its own processes;
- a fresh root holding read-only binds of /usr (and the /lib, /bin links), the Python prefix and the virtual
  environment, a private /tmp, /proc and /dev, and the container's own directory as /mnt/data (read-write);
  nothing else of the host (not $HOME, not the database, not other containers) exists inside;
- `--die-with-parent` (the server's death ends it), `--new-session` (no terminal injection), no new privileges
  (bwrap sets PR_SET_NO_NEW_PRIVS), capabilities dropped;
- as root the kernel empties its bounding set and switches to the container's own uid (RLIMIT_NPROC does not
  bind root), so its process limit is its own and its files are its own; rlimits on memory, CPU, processes and
  file size are set by the kernel before any user code runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("ddx_omni.containers.sandbox")

KERNEL_PATH = Path(__file__).with_name("kernel.py")
KERNEL_IN_SANDBOX = "/opt/ddx/kernel.py"
MNT_DATA = "/mnt/data"
START_TIMEOUT_S = 30.0
KILL_WAIT_S = 5.0
READ_LIMIT = 64 * 1024 * 1024  # one reply line: capped logs plus a few base64 PNGs
RESTART_NOTE = "A new Python process starts on the next call: variables are lost, files in /mnt/data stay."
SYSTEM_BINDS = ("/usr", "/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives", "/etc/fonts")
LIB_LINKS = ("lib", "lib32", "lib64", "libx32", "bin", "sbin")


class SandboxUnavailable(Exception):
    """The sandbox cannot be built here; the message says why and how to fix it."""


class KernelDied(Exception):
    """The kernel process ended during a call (a limit killed it, or the wall-clock timeout did)."""


@dataclass
class Limits:
    memory_bytes: int
    cpu_s: int  # the kernel's lifetime CPU budget (hard RLIMIT_CPU)
    call_cpu_s: int  # soft RLIMIT_CPU per call, above the CPU already used
    processes: int
    file_bytes: int
    open_files: int = 256


@dataclass
class KernelSpec:
    """Everything one container's kernel is started with."""

    data_dir: Path
    limits: Limits
    uid: int | None  # switch to it inside the sandbox (root servers only)
    max_output_bytes: int


@dataclass
class Sandbox:
    """How kernels are started: under bwrap, or (operator's explicit choice) as plain processes."""

    python: str = field(default_factory=lambda: sys.executable)
    sandboxed: bool = True
    bwrap: str | None = field(default_factory=lambda: shutil.which("bwrap"))

    def argv(self, spec: KernelSpec) -> list[str]:
        config = {"limits": vars(spec.limits), "max_output_bytes": spec.max_output_bytes,
                  "uid": spec.uid if self.sandboxed else None,
                  "workdir": MNT_DATA if self.sandboxed else str(spec.data_dir)}
        kernel = KERNEL_IN_SANDBOX if self.sandboxed else str(KERNEL_PATH)
        # -I: no PYTHON* variables, no user site, no script directory on sys.path; -u: unbuffered stdout/stderr
        command = [self.python, "-I", "-u", kernel, json.dumps(config)]
        return self._bwrap(spec) + command if self.sandboxed else command

    def _bwrap(self, spec: KernelSpec) -> list[str]:
        assert self.bwrap is not None
        args = [self.bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if os.geteuid() == 0 and spec.uid is not None:  # the kernel needs these two to switch to its uid
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        made: set[str] = {"/", "/usr", "/etc", "/opt", "/mnt", "/tmp"}
        args += ["--perms", "0755", "--dir", "/etc", "--perms", "0755", "--dir", "/opt", "--perms", "0755",
                 "--dir", "/opt/ddx", "--perms", "0755", "--dir", "/mnt"]
        args += self._binds() + ["--ro-bind", str(KERNEL_PATH), KERNEL_IN_SANDBOX]
        args += ["--bind", str(spec.data_dir), MNT_DATA, "--perms", "1777", "--tmpfs", "/tmp",
                 "--proc", "/proc", "--dev", "/dev"]
        for path in self._python_roots():
            args += _parents(path, made) + ["--ro-bind", path, path]
        return args + ["--clearenv", *self._env()]  # the kernel changes to /mnt/data once it is the container uid

    def _binds(self) -> list[str]:
        args: list[str] = []
        for name in LIB_LINKS:
            target = os.readlink(f"/{name}") if os.path.islink(f"/{name}") else None
            if target is not None:
                args += ["--symlink", target, f"/{name}"]
            elif os.path.isdir(f"/{name}"):
                args += ["--ro-bind", f"/{name}", f"/{name}"]
        for path in SYSTEM_BINDS:
            args += ["--ro-bind" if path == "/usr" else "--ro-bind-try", path, path]
        return args

    def _python_roots(self) -> list[str]:
        """The interpreter's prefix and the venv (each bound alone: their parents, e.g. $HOME, stay out)."""
        roots = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sysconfig.get_paths()["purelib"])}
        roots.add(os.path.dirname(os.path.dirname(os.path.abspath(self.python))))
        keep = sorted(r for r in roots if not r.startswith("/usr/") and r != "/usr")
        # a root inside another root is already there
        return [r for r in keep if not any(r != o and r.startswith(o + "/") for o in keep)]

    @staticmethod
    def _env() -> list[str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache",
               "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
               "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/matplotlib", "OPENBLAS_NUM_THREADS": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        return [part for key, value in env.items() for part in ("--setenv", key, value)]

    def plain_env(self) -> dict[str, str]:
        """The environment of an unsandboxed kernel: the same variables, nothing inherited from the server."""
        pairs = self._env()
        return {pairs[i + 1]: pairs[i + 2] for i in range(0, len(pairs), 3)}


def _parents(path: str, made: set[str]) -> list[str]:
    """`--dir` each missing ancestor with mode 0755 (bwrap makes them 0700: the dropped uid could not pass)."""
    args: list[str] = []
    parts = Path(path).parts[1:-1]
    for n in range(1, len(parts) + 1):
        ancestor = "/" + "/".join(parts[:n])
        if ancestor not in made:
            made.add(ancestor)
            args += ["--perms", "0755", "--dir", ancestor]
    return args


@dataclass
class Result:
    """One call's outcome. `failure` set: the sandbox ended the call (timeout, a limit killed the kernel)."""

    logs: str = ""
    dropped: int = 0
    error: str | None = None
    images: list[str] = field(default_factory=list)
    failure: str | None = None


class Kernel:
    """One container's running Python process."""

    def __init__(self, sandbox: Sandbox, spec: KernelSpec) -> None:
        self.sandbox, self.spec = sandbox, spec
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        # bwrap too starts from the kernel's variables, never the server's: `serve` re-executes itself with
        # OpenBLAS in LD_PRELOAD (llm/compute.py), and bwrap preloaded with it never got the kernel started
        env = self.sandbox.plain_env()
        spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
            *self.sandbox.argv(self.spec), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, env=env, limit=READ_LIMIT))
        try:
            # shielded: a cancelled spawn would SIGKILL bwrap's pid alone and orphan its half-built sandbox
            self.proc = await asyncio.shield(spawn)
            hello = await asyncio.wait_for(self._read(), START_TIMEOUT_S)
        except asyncio.CancelledError:
            self.proc = self.proc or await spawn
            await self.kill()  # the whole group, before passing the cancellation on
            raise
        except (TimeoutError, KernelDied) as exc:
            reason = await self._stderr()
            await self.kill()
            raise SandboxUnavailable(reason or f"the kernel did not start ({exc})") from None
        if not hello.get("ready"):
            await self.kill()
            raise SandboxUnavailable(f"the kernel answered {hello!r} instead of ready")

    async def execute(self, code: str, timeout_s: float) -> Result:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"code": code}) + "\n").encode())
            await self.proc.stdin.drain()
            reply = await asyncio.wait_for(self._read(), timeout_s)
        except TimeoutError:
            await self.kill()
            return Result(failure=f"Execution timed out after {timeout_s:g} s and was stopped. {RESTART_NOTE}")
        except (KernelDied, ConnectionError) as exc:
            await self.kill()
            return Result(failure=f"The Python process ended during the call ({exc}), most likely killed by a "
                                  f"resource limit. {RESTART_NOTE}")
        return Result(logs=str(reply.get("logs", "")), dropped=int(reply.get("dropped", 0)),
                      error=reply.get("error"), images=[str(i) for i in reply.get("images", [])])

    async def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await self.proc.stdout.readline()
        except (ValueError, asyncio.LimitOverrunError) as exc:  # a reply over READ_LIMIT: not a kernel's
            raise KernelDied(f"reply too large: {exc}") from None
        if not line:
            code = await self.proc.wait()
            raise KernelDied(_exit_reason(code))
        try:
            message = json.loads(line)
        except ValueError:
            raise KernelDied("unreadable reply") from None
        if not isinstance(message, dict):
            raise KernelDied("unreadable reply")
        return message

    async def _stderr(self) -> str:
        if self.proc is None or self.proc.stderr is None:
            return ""
        try:
            data = await asyncio.wait_for(self.proc.stderr.read(4096), 2.0)
        except TimeoutError:
            return ""
        return data.decode("utf-8", "replace").strip()

    async def kill(self) -> None:
        """SIGKILL the whole process group (bwrap; its pid namespace dies with it), then reap it."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # also after bwrap exited: its group may live on
        except (ProcessLookupError, PermissionError):
            pass
        try:
            await asyncio.wait_for(self.proc.wait(), KILL_WAIT_S)
        except TimeoutError:  # a straggler holds the pipes open: stop waiting for them
            log.warning("kernel process group %d did not end within %s s", self.proc.pid, KILL_WAIT_S)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"
