"""The in-sandbox Python kernel: one long-lived interpreter per container, driven by one JSON line per call.

It runs inside the sandbox with the standard library only (it never imports ddx_omni). Started with the
container's limits as a JSON argument, it sets its rlimits, drops to the container's uid when started as root,
then serves requests read from its stdin and answers on its stdout, one JSON object per line:

    → {"code": "x = 1\\nx + 1"}
    ← {"logs": "2\\n", "dropped": 0, "error": null, "images": ["<base64 png>", ...]}

Why a pipe protocol and not a Jupyter kernel: all it needs is execute → (logs, error, images); pipes need no
connection file or IPC sockets shared into the sandbox, no extra packages (ipykernel, pyzmq) inside it, and
the kernel sees EOF and exits the moment the server goes. The protocol pipes are moved to private descriptors
at start; fd 0 becomes /dev/null and fds 1 and 2 a capture pipe drained by a thread, so output written by C
code or by child processes is captured too, and capped here (inside the sandbox, on its CPU budget).
"""

from __future__ import annotations

import ast
import base64
import ctypes
import io
import json
import os
import resource
import secrets
import signal
import sys
import threading
import traceback
import warnings
from typing import Any

PR_CAPBSET_DROP = 24
CAP_LAST = 63
MAX_IMAGES = 8


class CpuLimitExceeded(Exception):
    """This call used up its CPU seconds (SIGXCPU at the soft RLIMIT_CPU the kernel sets per call)."""


def set_limits(limits: dict[str, int]) -> None:
    """rlimits for this process and every process it starts (they are inherited and cannot be raised again)."""
    pairs = {"memory_bytes": resource.RLIMIT_AS, "cpu_s": resource.RLIMIT_CPU, "processes": resource.RLIMIT_NPROC,
             "file_bytes": resource.RLIMIT_FSIZE, "open_files": resource.RLIMIT_NOFILE}
    for key, which in pairs.items():
        if limits.get(key):
            resource.setrlimit(which, (limits[key], limits[key]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def drop_privileges(uid: int | None) -> None:
    """As root inside the sandbox: empty the capability bounding set, then become `uid` (which clears the rest)."""
    if uid is None or os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(CAP_LAST + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the kernel's last capability: harmless
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


class Capture:
    """Drains the pipe behind fds 1 and 2; keeps the first `cap` bytes of each call's output, counts the rest."""

    def __init__(self, read_fd: int, cap: int) -> None:
        self.fd, self.cap = read_fd, cap
        self.marker = b"\x00ddx-end-" + secrets.token_hex(8).encode() + b"\x00"
        self.kept = bytearray()
        self.dropped = 0
        self.seen = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        pending = b""
        while chunk := os.read(self.fd, 65536):
            pending += chunk
            while (at := pending.find(self.marker)) >= 0:
                self._keep(pending[:at])
                pending = pending[at + len(self.marker):]
                self.seen.set()
            # keep a possible marker prefix for the next chunk
            cut = max(0, len(pending) - len(self.marker) + 1)
            self._keep(pending[:cut])
            pending = pending[cut:]

    def _keep(self, data: bytes) -> None:
        with self.lock:
            room = max(0, self.cap - len(self.kept))
            self.kept += data[:room]
            self.dropped += max(0, len(data) - room)

    def finish(self) -> tuple[str, int]:
        """Everything written up to now (the marker orders it), as text, and how many bytes were dropped."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed or replaced stream: nothing more to flush
                pass
        try:
            os.write(1, self.marker)
            self.seen.wait(5.0)
        except OSError:  # the code closed fd 1: take what arrived
            pass
        with self.lock:
            text, dropped = self.kept.decode("utf-8", "replace"), self.dropped
            self.kept, self.dropped = bytearray(), 0
        self.seen.clear()
        return text, dropped


def run_code(code: str, namespace: dict[str, Any]) -> str | None:
    """Run `code` like a notebook cell (the last expression's value is printed); the traceback on error."""
    try:
        tree = ast.parse(code, "<code>", "exec")
        tail = tree.body[-1] if tree.body else None
        last = tail.value if isinstance(tail, ast.Expr) else None
        if last is not None:
            tree.body.pop()
        exec(compile(tree, "<code>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last), "<code>", "eval"), namespace)
            if value is not None:
                print(repr(value))
        return None
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from user code end the call, not the kernel
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            return None
        frames = traceback.extract_tb(exc.__traceback__)
        skip = next((i for i, f in enumerate(frames) if f.filename == "<code>"), len(frames))
        lines = traceback.format_list(frames[skip:]) if skip < len(frames) else []
        head = ["Traceback (most recent call last):\n", *lines] if lines else []
        return "".join(head + traceback.format_exception_only(type(exc), exc))


def figures() -> list[str]:
    """The matplotlib figures the call left open, as base64 PNGs (then closed), when pyplot is in use."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    images = []
    for number in plt.get_fignums()[:MAX_IMAGES]:
        buffer = io.BytesIO()
        plt.figure(number).savefig(buffer, format="png")
        images.append(base64.b64encode(buffer.getvalue()).decode())
    plt.close("all")
    return images


def per_call_cpu(limits: dict[str, int]) -> None:
    """Lower the soft CPU limit to what this call may use (the hard limit is the kernel's lifetime budget)."""
    if not limits.get("call_cpu_s"):
        return
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = spent + limits["call_cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def on_sigxcpu(_signum: int, _frame: Any) -> None:
    raise CpuLimitExceeded("CPU time limit of this call exceeded")


def serve(proto_in: io.BufferedReader, proto_out: int, capture: Capture, limits: dict[str, int]) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    me = os.getpid()
    write(proto_out, {"ready": True, "python": sys.version.split()[0]})
    for line in proto_in:
        request = json.loads(line)
        per_call_cpu(limits)
        try:
            error = run_code(request["code"], namespace)
            images = figures() if error is None else []
        finally:
            if os.getpid() != me:  # a fork of the code returned here: it must never answer for the kernel
                os._exit(1)
        logs, dropped = capture.finish()
        write(proto_out, {"logs": logs, "dropped": dropped, "error": error, "images": images})


def write(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main() -> None:
    config = json.loads(sys.argv[1])
    limits = config.get("limits", {})
    set_limits(limits)
    drop_privileges(config.get("uid"))
    proto_in, proto_out = os.fdopen(os.dup(0), "rb"), os.dup(1)  # os.dup: not inherited by child processes
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    capture = Capture(read_fd, int(config.get("max_output_bytes", 65536)))
    signal.signal(signal.SIGXCPU, on_sigxcpu)
    warnings.filterwarnings("ignore", message=".*non-interactive.*")  # plt.show() under Agg
    os.chdir(config.get("workdir", "/mnt/data"))
    sys.path.insert(0, os.getcwd())
    serve(proto_in, proto_out, capture, limits)


if __name__ == "__main__":
    main()
