"""The containers component: container records and files, one sandboxed kernel per running container, expiry.

A container is a record (`[storage].url`: SQLite by default, PostgreSQL for N replicas), a directory (its
/mnt/data) and, once code has run in it, a kernel process. Calls into one container run one at a time (its
lock); expiry kills the process and removes the files, both on a timer and at start, so nothing outlives its
idle time across restarts either.

With N replicas on one database, a container lives on the replica that made it (its record's `owner`, that
replica's URL): the process and the files are there. Another replica relays what needs them (code, files,
delete) to the owner over HTTP, as responses/peers.py does for running responses; a container whose owner's
lease has run out died with it, and any replica marks it expired. Each replica expires only its own idle
containers, so one starting up never touches the live containers of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import ApiError
from ..core.settings import Settings
from ..responses.peers import Peers, replica_url
from ..responses.schemas import bad_request, list_object, new_id, not_found
from ..storage import Database, open_database
from ..storage.replicas import MIGRATIONS as REPLICA_MIGRATIONS
from . import fs
from .sandbox import Kernel, KernelSpec, Limits, Result, Sandbox, SandboxUnavailable
from .schemas import MEMORY_BYTES, container_object, deleted_object, file_object, page
from .store import ContainerStore

log = logging.getLogger("ddx_omni.containers")

SWEEP_INTERVAL_S = 30.0
RUNNING, EXPIRED = "running", "expired"
PROBE_CODE = "import sys"
RELAY_SLACK_S = 30.0  # a relayed call waits this much longer than the call's own timeout
RELAYED = "x-ddx-relayed"  # a request one replica relayed to a container's owner: never relayed again


class FileSource(Protocol):
    """Where `file_ids` come from (the Files API): a file's name and bytes by id; raises ApiError 404."""

    async def read_bytes(self, file_id: str) -> tuple[str, bytes]: ...


@dataclass
class Execution:
    """One call's outcome as the tool reports it."""

    container_id: str
    logs: str
    images: list[str] = field(default_factory=list)  # data:image/png;base64,… URLs
    error: bool = False  # the code raised (a Python error, in the logs)
    failure: str | None = None  # the sandbox ended the call (timeout, a limit)
    files: list[dict[str, Any]] = field(default_factory=list)  # container.file objects this call wrote


def _now() -> int:
    return int(time.time())


def fix_for(reason: str) -> str:
    """How an operator makes the sandbox work, for the reason bwrap gave."""
    if sys.platform != "linux":
        return ("the sandbox needs Linux namespaces (bubblewrap); on this platform either run ddx-omni on Linux "
                "or set [code_interpreter].allow_unsandboxed = true to run code without isolation")
    if "not installed" in reason:
        return ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or set "
                "[code_interpreter].allow_unsandboxed = true to run code without isolation")
    if "proc" in reason.lower():
        return ("inside Docker/Podman the outer /proc is masked: run the container with "
                "--security-opt unmask=/proc/* (or --privileged)")
    return ("allow user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0) or "
            "run the server as root, or set [code_interpreter].allow_unsandboxed = true to run code without isolation")


class ContainersService:
    name = "code_interpreter"

    def __init__(self, settings: Settings, files: FileSource | None = None, sandbox: Sandbox | None = None,
                 database: Database | None = None) -> None:
        self.settings = settings
        self.cfg = settings.code_interpreter
        self.files = files
        self.sandbox = sandbox or Sandbox()
        self.root = Path(self.cfg.data_dir)
        self.store = ContainerStore(database or containers_database(settings))
        self.here = replica_url(settings)  # this replica, as the `owner` of the containers it runs
        self.peers = Peers(settings)
        self.kernels: dict[str, Kernel] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.refusal: str | None = None  # why code cannot run here (400), when it cannot
        self.mode = "unprobed"
        self._probe: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # ---- component ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.open()
        if self.store.db.shared:  # the replicas' heartbeats tell which owners are alive
            await self.store.db.migrate(REPLICA_MIGRATIONS)
        self.here = replica_url(self.settings)  # the port is final only now (tests pick a free one)
        await self.sweep()
        self._probe = asyncio.create_task(self._check_sandbox())  # ~50 ms: it must not delay the start
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        # the probe too is cancelled: on a loaded machine it can take seconds, and a stopping server must not
        # wait for it (its own `finally` kills the probe's sandbox)
        for task in (self._probe, self._sweeper):
            if task is not None:
                task.cancel()
        for task in (self._probe, self._sweeper):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for kernel in list(self.kernels.values()):
            await kernel.kill()
        self.kernels.clear()
        await self.peers.close()
        await self.store.close()

    def health(self) -> dict[str, Any]:
        return {"state": "ready", "sandbox": self.mode, "refusal": self.refusal, "kernels": len(self.kernels),
                "storage": self.store.db.dialect, "replica": self.here}

    # ---- the sandbox check ------------------------------------------------------------------------------
    async def _check_sandbox(self) -> None:
        reason = await self._probe_reason()
        if reason is None:
            self.mode = "bubblewrap"
            if self.cfg.allow_unsandboxed:
                log.info("code interpreter: the bubblewrap sandbox works; allow_unsandboxed is not needed")
            return
        if self.cfg.allow_unsandboxed:
            self.sandbox.sandboxed = False
            self.mode = "unsandboxed"
            log.error("code interpreter runs UNSANDBOXED (allow_unsandboxed = true): model-written code runs as "
                      "this server's user with its network and files; the sandbox failed because %s", reason)
            return
        self.mode = "unavailable"
        self.refusal = f"The code interpreter is unavailable here: {reason}. Fix: {fix_for(reason)}."
        log.warning("%s", self.refusal)

    async def _probe_reason(self) -> str | None:
        if sys.platform != "linux":
            return f"no bubblewrap sandbox on {sys.platform}"
        if self.sandbox.bwrap is None:
            return "bubblewrap (bwrap) is not installed"
        probe: dict[str, Any] = {"id": ".probe", "seq": 0}  # as a real container would run: own uid, own directory
        await asyncio.to_thread(self._make_dir, probe)
        kernel = Kernel(self.sandbox, self._spec(self.data_dir(probe["id"]), self._uid(probe), "1g"))
        try:
            await kernel.start()
            result = await kernel.execute(PROBE_CODE, 30.0)
            return result.failure or result.error
        except SandboxUnavailable as exc:
            return f"bwrap could not build the sandbox ({exc})"
        finally:
            await kernel.kill()
            await asyncio.to_thread(shutil.rmtree, self.data_dir(probe["id"]), True)

    async def require_sandbox(self) -> None:
        """Raise the 400 that says why code cannot run here (and how to fix it), when it cannot."""
        if self._probe is not None:
            await asyncio.shield(self._probe)
        if self.refusal is not None:
            raise ApiError(self.refusal, status=400, code="sandbox_unavailable")

    def _spec(self, data_dir: Path, uid: int | None, memory_limit: str) -> KernelSpec:
        timeout = int(self.cfg.timeout_s) + 1
        limits = Limits(memory_bytes=MEMORY_BYTES[memory_limit], cpu_s=self.cfg.cpu_s, call_cpu_s=timeout,
                        processes=self.cfg.max_processes, file_bytes=self.cfg.max_file_bytes)
        return KernelSpec(data_dir=data_dir, limits=limits, uid=uid, max_output_bytes=self.cfg.max_output_bytes)

    def _uid(self, row: dict[str, Any]) -> int | None:
        """Root servers give each container its own uid (its own process limit, its own files)."""
        return self.cfg.uid_base + row["seq"] if os.geteuid() == 0 else None

    def data_dir(self, container_id: str) -> Path:
        return self.root / container_id

    # ---- containers ------------------------------------------------------------------------------------
    async def create(self, name: str, file_ids: list[str] | None = None, minutes: int | None = None,
                     memory_limit: str | None = None, container_id: str | None = None) -> dict[str, Any]:
        """A new running container; `container_id`: one reserved earlier (the tool's `auto` container)."""
        await self.require_sandbox()
        memory_limit = memory_limit or self.cfg.memory_limit
        if memory_limit not in MEMORY_BYTES:
            raise bad_request(f"memory_limit: one of {', '.join(MEMORY_BYTES)}", "memory_limit")
        if MEMORY_BYTES[memory_limit] > MEMORY_BYTES[self.cfg.max_memory_limit]:
            raise bad_request(f"memory_limit: {memory_limit} is above this server's maximum "
                              f"{self.cfg.max_memory_limit}", "memory_limit")
        if len(await self.store.containers(status=RUNNING, owner=self.here)) >= self.cfg.max_containers:
            raise ApiError(f"Too many running containers (max_containers = {self.cfg.max_containers}); delete one "
                           f"or wait for one to expire", status=429, code="too_many_containers")
        sources = [await self._read_source(file_id) for file_id in file_ids or []]
        now = _now()
        row = await self.store.add_container({
            "id": container_id or new_id("cntr"), "name": name, "status": RUNNING, "created_at": now,
            "last_active_at": now, "expires_minutes": minutes or self.cfg.idle_minutes, "memory_limit": memory_limit,
            "owner": self.here})
        await asyncio.to_thread(self._make_dir, row)
        for filename, data in sources:
            await self._write(row, fs.relative(Path(filename).name or "file"), data, "user")
        return container_object(row)

    def _make_dir(self, row: dict[str, Any]) -> None:
        path = self.data_dir(row["id"])
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        uid = self._uid(row)
        if uid is not None:
            os.chown(path, uid, uid)

    async def _read_source(self, file_id: str) -> tuple[str, bytes]:
        if self.files is None:
            raise not_found(f"No file with id {file_id!r}: this server has no Files API wired", "file_ids")
        return await self.files.read_bytes(file_id)

    async def get(self, container_id: str) -> dict[str, Any]:
        return container_object(await self._row(container_id))

    async def list_containers(self, after: str | None, limit: int, order: str,
                              name: str | None = None) -> dict[str, Any]:
        data, more = page(await self.store.containers(name=name), after, limit, order)
        return list_object([container_object(r) for r in data], more)

    async def delete(self, container_id: str) -> dict[str, Any]:
        row = await self._row(container_id)
        await self._discard(row["id"])
        await self.store.delete_container(row["id"])
        return deleted_object(row["id"], "container")

    async def _row(self, container_id: str) -> dict[str, Any]:
        row = await self.store.container(container_id)
        if row is None:
            raise not_found(f"No container found with id {container_id!r}", "container_id")
        return row

    def _mine(self, row: dict[str, Any]) -> bool:
        """Whether this process runs the container (on a database of its own, every container is its own)."""
        return not self.store.db.shared or row["owner"] in (self.here, "")

    async def _live(self) -> set[str]:
        return await self.store.live_replicas(self.settings.storage.lease_s)

    async def owner(self, container_id: str) -> str | None:
        """The URL of the other live replica that runs this container; None when this one answers (the container
        is its own, unknown, expired, or its replica died)."""
        row = await self.store.container(container_id)
        if row is None or row["status"] != RUNNING or self._mine(row):
            return None
        return row["owner"] if row["owner"] in await self._live() else None

    async def running(self, container_id: str) -> dict[str, Any]:
        """The container's record; 404 when unknown, 400 when it has expired (or died with its replica)."""
        row = await self._row(container_id)
        if row["status"] == RUNNING and not self._mine(row) and row["owner"] not in await self._live():
            await self.store.expire(row["id"], EXPIRED)  # its process ended with its replica
            row = {**row, "status": EXPIRED}
        if row["status"] != RUNNING:
            raise bad_request(f"Container {container_id} has expired (idle for more than {row['expires_minutes']}"
                              f" minutes); create a new one", "container_id", code="container_expired")
        return row

    async def _local(self, container_id: str) -> dict[str, Any]:
        """`running`, for what needs the process or the files: 409 when they are on another replica (the router
        relays such requests first; one relayed to a replica that no longer owns the container ends here)."""
        row = await self.running(container_id)
        if not self._mine(row):
            raise ApiError(f"Container {container_id} runs on the replica {row['owner']}, not on this one",
                           code="container_on_another_replica", param="container_id")
        return row

    async def relay(self, owner: str, method: str, path: str, body: bytes, content_type: str | None,
                    timeout_s: float | None = None) -> tuple[int, bytes, dict[str, str]]:
        """A request for a container of another replica, sent to it as it came → its status, body, headers."""
        headers = {RELAYED: "1", **({"content-type": content_type} if content_type else {})}
        answer = await self.peers.forward(method, f"{owner}{path}", content=body, headers=headers,
                                          timeout_s=timeout_s)
        kept = {k: v for k, v in answer.headers.items() if k in ("content-type", "content-disposition")}
        return answer.status_code, answer.content, kept

    async def _discard(self, container_id: str) -> None:
        """Kill its process and remove its files (the record stays)."""
        async with self._lock(container_id):
            kernel = self.kernels.pop(container_id, None)
            if kernel is not None:
                await kernel.kill()
            await asyncio.to_thread(shutil.rmtree, self.data_dir(container_id), True)
        self.locks.pop(container_id, None)

    def _lock(self, container_id: str) -> asyncio.Lock:
        return self.locks.setdefault(container_id, asyncio.Lock())

    # ---- expiry -----------------------------------------------------------------------------------------
    async def sweep(self, now: int | None = None) -> list[str]:
        """Expire this replica's idle running containers and those whose replica died (never the live ones of
        another replica: it expires its own); remove directories no running container owns. → expired ids."""
        now = _now() if now is None else now
        live = await self._live() if self.store.db.shared else set()
        expired = []
        for row in await self.store.containers(status=RUNNING):
            if self._mine(row):
                if row["last_active_at"] + 60 * row["expires_minutes"] > now:
                    continue
                await self._discard(row["id"])
            elif row["owner"] in live:
                continue
            await self.store.expire(row["id"], EXPIRED)
            expired.append(row["id"])
        keep = {row["id"] for row in await self.store.containers(status=RUNNING)}
        await asyncio.to_thread(self._remove_orphans, keep)
        if expired:
            log.info("expired %d idle containers", len(expired))
        return expired

    def _remove_orphans(self, keep: set[str]) -> None:
        for entry in os.scandir(self.root) if self.root.is_dir() else []:
            if entry.name.startswith("cntr_") and entry.name not in keep:
                shutil.rmtree(entry.path, ignore_errors=True)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await self.sweep()
            except Exception:  # one failed sweep must not end expiry for good
                log.exception("container expiry sweep failed")

    # ---- files ------------------------------------------------------------------------------------------
    async def add_file(self, container_id: str, filename: str, data: bytes) -> dict[str, Any]:
        row = await self._local(container_id)
        try:
            rel = fs.relative(Path(filename).name)
        except fs.UnsafePath as exc:
            raise bad_request(f"file: {exc}", "file") from None
        return file_object(await self._write(row, rel, data, "user"))

    async def add_file_id(self, container_id: str, file_id: str) -> dict[str, Any]:
        await self._local(container_id)
        filename, data = await self._read_source(file_id)
        return await self.add_file(container_id, filename, data)

    async def _write(self, row: dict[str, Any], rel: str, data: bytes, source: str) -> dict[str, Any]:
        async with self._lock(row["id"]):
            try:
                size = await asyncio.to_thread(fs.write_file, self.data_dir(row["id"]), rel, data, self._uid(row))
            except fs.UnsafePath as exc:
                raise bad_request(f"Cannot write {exc}", "file") from None
            known = {f["path"]: f for f in await self.store.files(row["id"])}
            record = {"id": known[rel]["id"] if rel in known else new_id("cfile"), "container_id": row["id"],
                      "path": rel, "bytes": size, "created_at": _now(), "source": source}
            await self.store.put_file(record)
            await self.store.touch(row["id"], _now())
        return record

    async def list_files(self, container_id: str, after: str | None, limit: int, order: str) -> dict[str, Any]:
        row = await self._local(container_id)
        await self._sync(row)
        data, more = page(await self.store.files(row["id"]), after, limit, order)
        return list_object([file_object(f) for f in data], more)

    async def get_file(self, container_id: str, file_id: str) -> dict[str, Any]:
        return file_object(await self._file(container_id, file_id))

    async def _file(self, container_id: str, file_id: str) -> dict[str, Any]:
        row = await self._local(container_id)
        await self._sync(row)
        record = await self.store.file(row["id"], file_id)
        if record is None:
            raise not_found(f"No file {file_id!r} in container {container_id}", "file_id")
        return record

    async def file_content(self, container_id: str, file_id: str) -> tuple[str, bytes]:
        record = await self._file(container_id, file_id)
        try:
            data = await asyncio.to_thread(fs.read_file, self.data_dir(container_id), record["path"])
        except fs.UnsafePath as exc:
            raise not_found(f"File {file_id} cannot be read: {exc}", "file_id") from None
        return Path(record["path"]).name, data

    async def delete_file(self, container_id: str, file_id: str) -> dict[str, Any]:
        record = await self._file(container_id, file_id)
        async with self._lock(container_id):
            await asyncio.to_thread(fs.remove_file, self.data_dir(container_id), record["path"])
            await self.store.delete_files([file_id])
        return deleted_object(file_id, "container.file")

    async def _sync(self, row: dict[str, Any], before: dict[str, fs.Entry] | None = None) -> list[dict[str, Any]]:
        """Bring the file rows in line with the directory; → the rows of files new or changed since `before`."""
        entries = {e.path: e for e in await asyncio.to_thread(fs.scan, self.data_dir(row["id"]))}
        known = {f["path"]: f for f in await self.store.files(row["id"])}
        await self.store.delete_files([f["id"] for path, f in known.items() if path not in entries])
        changed = []
        for path, entry in entries.items():
            old = known.get(path)
            if old is None:
                old = {"id": new_id("cfile"), "container_id": row["id"], "path": path, "bytes": entry.size,
                       "created_at": _now(), "source": "assistant"}
                await self.store.put_file(old)
            elif old["bytes"] != entry.size:
                await self.store.set_file_bytes(old["id"], entry.size)
                old = {**old, "bytes": entry.size}
            prior = before.get(path) if before is not None else None
            if before is not None and (prior is None or (prior.size, prior.mtime_ns) != (entry.size, entry.mtime_ns)):
                changed.append(old)
        return changed

    # ---- running code -------------------------------------------------------------------------------------
    async def execute(self, container_id: str, code: str, relayed: bool = False) -> Execution:
        """Run code in the container, here or (relayed once) on the replica that runs it."""
        owner = None if relayed else await self.owner(container_id)
        if owner is not None:
            return await self._execute_at(owner, container_id, code)
        await self.require_sandbox()
        row = await self._local(container_id)
        async with self._lock(row["id"]):
            kernel = await self._kernel(row)
            before = {e.path: e for e in await asyncio.to_thread(fs.scan, self.data_dir(row["id"]))}
            result = await kernel.execute(code, self.cfg.timeout_s)
            if not kernel.alive:
                self.kernels.pop(row["id"], None)
            written = await self._sync(row, before)
            await self.store.touch(row["id"], _now())
        return Execution(row["id"], self._logs(result), [f"data:image/png;base64,{i}" for i in result.images],
                         error=result.error is not None, failure=result.failure,
                         files=[file_object(f) for f in written])

    async def _execute_at(self, owner: str, container_id: str, code: str) -> Execution:
        path = f"/v1/containers/{container_id}/execute"
        status, body, _ = await self.relay(owner, "POST", path, json.dumps({"code": code}).encode(),
                                           "application/json", self.cfg.timeout_s + RELAY_SLACK_S)
        try:
            answer = json.loads(body)
        except ValueError:
            raise ApiError(f"the container's replica {owner} answered {status} without JSON", status=502,
                           code="replica_error") from None
        if status != 200:
            error = answer.get("error") or {}
            raise ApiError(error.get("message") or "the container's replica refused", status=status,
                           code=error.get("code") or "replica_error", param=error.get("param"))
        return Execution(**answer)

    async def _kernel(self, row: dict[str, Any]) -> Kernel:
        kernel = self.kernels.get(row["id"])
        if kernel is None or not kernel.alive:
            kernel = Kernel(self.sandbox, self._spec(self.data_dir(row["id"]), self._uid(row), row["memory_limit"]))
            try:
                await kernel.start()
            except SandboxUnavailable as exc:
                raise ApiError(f"The container's sandbox could not start: {exc}. Fix: {fix_for(str(exc))}.",
                               status=400, code="sandbox_unavailable") from None
            self.kernels[row["id"]] = kernel
        return kernel

    def _logs(self, result: Result) -> str:
        logs = result.logs
        if result.dropped:
            logs += f"\n[output truncated: {result.dropped} more bytes not shown]\n"
        if result.error:
            logs += result.error
        if result.failure:
            logs += ("\n" if logs and not logs.endswith("\n") else "") + result.failure
        return logs


def containers_database(settings: Settings) -> Database:
    """[storage].url, or (empty) the SQLite file containers.db in [code_interpreter].data_dir (as before)."""
    return open_database(settings.storage.url, default_sqlite=Path(settings.code_interpreter.data_dir) /
                         "containers.db", pool_size=settings.storage.pool_size)


def create_service(settings: Settings, files: FileSource | None = None) -> ContainersService:
    return ContainersService(settings, files)
