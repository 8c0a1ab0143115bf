"""Records of containers and their files on `storage/` (SQLite by default, PostgreSQL for N replicas).

The files themselves live on disk under the container's directory (its /mnt/data) on the replica that runs it;
a file row names one of them by path and gives it a stable id. Rows are synced with the directory after every
call (`sync_files`). A container row names its `owner`, the URL of the replica whose process runs it.
"""

from __future__ import annotations

from typing import Any

from ..storage import Database, Migrations, Statement

# Version 1 adopts the containers table of a containers.db made before storage/ (CREATE … IF NOT EXISTS, then
# the owner column); its old `files` table is left alone: file rows are rebuilt from the directories on first
# use (new ids). Container files get their own table name: `files` is the Files API's, on a shared database.
_CONTAINERS = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,           -- gives the container its own uid (uid_base + seq)
    name TEXT NOT NULL,
    status TEXT NOT NULL,           -- running | expired
    created_at {int} NOT NULL,
    last_active_at {int} NOT NULL,
    expires_minutes INTEGER NOT NULL,
    memory_limit TEXT NOT NULL
);
ALTER TABLE containers ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX containers_by_status ON containers (status, created_at);
CREATE TABLE container_files (
    id TEXT PRIMARY KEY,
    container_id TEXT NOT NULL,
    path TEXT NOT NULL,             -- relative to /mnt/data
    bytes {int} NOT NULL,
    created_at {int} NOT NULL,
    source TEXT NOT NULL,           -- user | assistant
    UNIQUE (container_id, path)
);
CREATE TABLE container_seq (n {int} NOT NULL);
INSERT INTO container_seq (n) SELECT COALESCE(MAX(seq), 0) FROM containers
"""
MIGRATIONS = Migrations("containers_schema_version", sqlite=(_CONTAINERS.format(int="INTEGER"),),
                        postgresql=(_CONTAINERS.format(int="BIGINT"),))

CONTAINER_COLUMNS = ("id", "seq", "name", "status", "created_at", "last_active_at", "expires_minutes",
                     "memory_limit", "owner")
FILE_COLUMNS = ("id", "container_id", "path", "bytes", "created_at", "source")
_CONTAINERS_SQL, _FILES_SQL = ", ".join(CONTAINER_COLUMNS), ", ".join(FILE_COLUMNS)


def _one(sql: str, *params: Any) -> Statement:
    return (sql, params, False)


class ContainerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def path(self) -> str:
        """Where the records are (the SQLite file, or the PostgreSQL URL without its password)."""
        return self.db.describe()

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate(MIGRATIONS)

    async def close(self) -> None:
        await self.db.close()

    async def _rows(self, columns: tuple[str, ...], sql: str, *params: Any) -> list[dict[str, Any]]:
        return [dict(zip(columns, row, strict=True)) for row in await self.db.read(sql, params)]

    # ---- containers ----------------------------------------------------------------------------------------
    async def add_container(self, row: dict[str, Any]) -> dict[str, Any]:
        """Insert, with the next `seq`: the counter's row lock orders concurrent creates (on PostgreSQL too, where
        MAX(seq) + 1 would give two of them the same uid)."""
        values = tuple(row[column] for column in CONTAINER_COLUMNS if column != "seq")
        marks = ", ".join("(SELECT n FROM container_seq)" if c == "seq" else "?" for c in CONTAINER_COLUMNS)
        await self.db.transaction([_one("UPDATE container_seq SET n = n + 1"),
                                   _one(f"INSERT INTO containers ({_CONTAINERS_SQL}) VALUES ({marks})", *values)])
        made = await self.container(row["id"])
        assert made is not None
        return made

    async def container(self, container_id: str) -> dict[str, Any] | None:
        rows = await self._rows(CONTAINER_COLUMNS, f"SELECT {_CONTAINERS_SQL} FROM containers WHERE id = ?",
                                container_id)
        return rows[0] if rows else None

    async def containers(self, *, status: str | None = None, name: str | None = None,
                         owner: str | None = None) -> list[dict[str, Any]]:
        """Oldest first (ids are time-ordered); filtered by status, name and/or owner."""
        where, args = [], []
        for column, value in (("status", status), ("name", name), ("owner", owner)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return await self._rows(CONTAINER_COLUMNS,
                                f"SELECT {_CONTAINERS_SQL} FROM containers {clause} ORDER BY created_at, id", *args)

    async def touch(self, container_id: str, now: int) -> None:
        await self.db.transaction([_one("UPDATE containers SET last_active_at = ? WHERE id = ?", now, container_id)])

    async def expire(self, container_id: str, status: str) -> None:
        """Set its status and forget its files (their directory is gone, or on a replica that died)."""
        await self.db.transaction([_one("DELETE FROM container_files WHERE container_id = ?", container_id),
                                   _one("UPDATE containers SET status = ? WHERE id = ?", status, container_id)])

    async def delete_container(self, container_id: str) -> None:
        await self.db.transaction([_one("DELETE FROM container_files WHERE container_id = ?", container_id),
                                   _one("DELETE FROM containers WHERE id = ?", container_id)])

    async def live_replicas(self, lease_s: float) -> set[str]:
        """The URLs of the replicas whose heartbeat is fresh (storage/replicas.py keeps the table)."""
        rows = await self.db.read(f"SELECT url FROM replicas WHERE heartbeat_at > {self.db.now_sql} - ?",
                                  (lease_s,))
        return {row[0] for row in rows}

    # ---- files -----------------------------------------------------------------------------------------
    async def files(self, container_id: str) -> list[dict[str, Any]]:
        return await self._rows(FILE_COLUMNS, f"SELECT {_FILES_SQL} FROM container_files WHERE container_id = ? "
                                              f"ORDER BY created_at, id", container_id)

    async def file(self, container_id: str, file_id: str) -> dict[str, Any] | None:
        rows = await self._rows(FILE_COLUMNS, f"SELECT {_FILES_SQL} FROM container_files WHERE container_id = ? "
                                              f"AND id = ?", container_id, file_id)
        return rows[0] if rows else None

    async def put_file(self, row: dict[str, Any]) -> None:
        """Insert, or for a path already known keep its id and take the new size and source."""
        await self.db.transaction([_one(
            f"INSERT INTO container_files ({_FILES_SQL}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (container_id, path) "
            f"DO UPDATE SET bytes = excluded.bytes, source = excluded.source", *(row[c] for c in FILE_COLUMNS))])

    async def set_file_bytes(self, file_id: str, size: int) -> None:
        await self.db.transaction([_one("UPDATE container_files SET bytes = ? WHERE id = ?", size, file_id)])

    async def delete_files(self, file_ids: list[str]) -> None:
        if file_ids:
            await self.db.transaction([("DELETE FROM container_files WHERE id = ?", [(i,) for i in file_ids], True)])
