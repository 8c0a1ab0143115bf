"""SQLite records of containers and their files (what survives a restart, so expiry can clean up after it).

The files themselves live on disk under the container's directory (its /mnt/data); a file row names one of
them by path and gives it a stable id. Rows are synced with the directory after every call (`sync_files`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,           -- gives the container its own uid (uid_base + seq)
    name TEXT NOT NULL,
    status TEXT NOT NULL,           -- running | expired
    created_at INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    expires_minutes INTEGER NOT NULL,
    memory_limit TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    container_id TEXT NOT NULL,
    path TEXT NOT NULL,             -- relative to /mnt/data
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    source TEXT NOT NULL,           -- user | assistant
    UNIQUE (container_id, path)
);
"""

CONTAINER_COLUMNS = "id, seq, name, status, created_at, last_active_at, expires_minutes, memory_limit"
FILE_COLUMNS = "id, container_id, path, bytes, created_at, source"


class ContainerStore:
    """One connection behind a lock: writes are few (create, touch, file rows) and small."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.executescript(SCHEMA)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        assert self._db is not None, "container store is not open"
        async with self._lock:
            cursor = await self._db.execute(sql, args)
            rows = await cursor.fetchall()
        return [dict(row) for row in rows]

    # ---- containers ----------------------------------------------------------------------------------------
    async def add_container(self, row: dict[str, Any]) -> dict[str, Any]:
        seq = (await self._run("SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM containers"))[0]["n"]
        row = {**row, "seq": seq}
        await self._run(f"INSERT INTO containers ({CONTAINER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        tuple(row[c.strip()] for c in CONTAINER_COLUMNS.split(",")))
        return row

    async def container(self, container_id: str) -> dict[str, Any] | None:
        rows = await self._run(f"SELECT {CONTAINER_COLUMNS} FROM containers WHERE id = ?", (container_id,))
        return rows[0] if rows else None

    async def containers(self, *, status: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """Oldest first (ids are time-ordered); filtered by status and/or name."""
        where, args = [], []
        for column, value in (("status", status), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return await self._run(f"SELECT {CONTAINER_COLUMNS} FROM containers {clause} ORDER BY created_at, id",
                               tuple(args))

    async def touch(self, container_id: str, now: int) -> None:
        await self._run("UPDATE containers SET last_active_at = ? WHERE id = ?", (now, container_id))

    async def set_status(self, container_id: str, status: str) -> None:
        await self._run("UPDATE containers SET status = ? WHERE id = ?", (status, container_id))

    async def delete_container(self, container_id: str) -> None:
        await self._run("DELETE FROM files WHERE container_id = ?", (container_id,))
        await self._run("DELETE FROM containers WHERE id = ?", (container_id,))

    # ---- files -----------------------------------------------------------------------------------------
    async def files(self, container_id: str) -> list[dict[str, Any]]:
        return await self._run(f"SELECT {FILE_COLUMNS} FROM files WHERE container_id = ? ORDER BY created_at, id",
                               (container_id,))

    async def file(self, container_id: str, file_id: str) -> dict[str, Any] | None:
        rows = await self._run(f"SELECT {FILE_COLUMNS} FROM files WHERE container_id = ? AND id = ?",
                               (container_id, file_id))
        return rows[0] if rows else None

    async def put_file(self, row: dict[str, Any]) -> None:
        """Insert, or for a path already known keep its id and take the new size and source."""
        await self._run(f"INSERT INTO files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT "
                        f"(container_id, path) DO UPDATE SET bytes = excluded.bytes, source = excluded.source",
                        tuple(row[c.strip()] for c in FILE_COLUMNS.split(",")))

    async def set_file_bytes(self, file_id: str, size: int) -> None:
        await self._run("UPDATE files SET bytes = ? WHERE id = ?", (size, file_id))

    async def delete_files(self, file_ids: list[str]) -> None:
        for file_id in file_ids:
            await self._run("DELETE FROM files WHERE id = ?", (file_id,))
