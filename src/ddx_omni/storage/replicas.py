"""This process among the replicas sharing a database: a row with its URL, kept alive by a heartbeat.

A replica whose heartbeat is older than the lease is dead, and what it was running can be failed by the others;
one whose heartbeat is fresh is alive, and a replica starting up leaves its work alone. The clock is the
database's (`now_sql`), so replicas with skewed clocks still agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from .base import Database, Migrations

log = logging.getLogger("ddx_omni.storage.replicas")

_TABLE = ("CREATE TABLE replicas (id TEXT PRIMARY KEY, url TEXT NOT NULL, started_at {t} NOT NULL,"
          " heartbeat_at {t} NOT NULL)")
MIGRATIONS = Migrations("replicas_schema_version", sqlite=(_TABLE.format(t="REAL"),),
                        postgresql=(_TABLE.format(t="DOUBLE PRECISION"),))


class Replica:
    """Register at `start`, beat every `heartbeat_s` (then run `on_beat`, e.g. a sweep), unregister at `stop`.
    Without a shared database there is no one to tell: no heartbeat task runs."""

    def __init__(self, db: Database, replica_id: str, url: str, heartbeat_s: float, lease_s: float,
                 on_beat: Callable[[], Awaitable[object]] | None = None) -> None:
        self.db, self.id, self.url = db, replica_id, url
        self.heartbeat_s, self.lease_s = heartbeat_s, lease_s
        self.on_beat = on_beat
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.db.migrate(MIGRATIONS)
        now = self.db.now_sql
        # a row with this URL is this replica's previous life: nothing can be listening there but us
        await self.db.transaction([
            ("DELETE FROM replicas WHERE url = ? OR id = ?", (self.url, self.id), False),
            (f"INSERT INTO replicas (id, url, started_at, heartbeat_at) VALUES (?, ?, {now}, {now})",
             (self.id, self.url), False)])
        if self.db.shared:
            self._task = asyncio.create_task(self._beat(), name=f"replica {self.id} heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):  # the database may be the reason we stop
            await self.db.transaction([("DELETE FROM replicas WHERE id = ?", (self.id,), False)])

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.db.transaction([(f"UPDATE replicas SET heartbeat_at = {self.db.now_sql} WHERE id = ?",
                                            (self.id,), False)])
                if self.on_beat is not None:
                    await self.on_beat()
            except Exception:
                log.exception("replica heartbeat failed")

    def live_sql(self) -> str:
        """SQL selecting the ids of live replicas; takes one parameter, the lease (self.lease_s)."""
        return f"SELECT id FROM replicas WHERE heartbeat_at > {self.db.now_sql} - ?"
