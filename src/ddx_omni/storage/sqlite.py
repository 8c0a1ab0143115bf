"""The embedded backend: one SQLite file (aiosqlite, WAL), for one process.

One writer connection behind an asyncio lock (every write is one `BEGIN IMMEDIATE … COMMIT`, so concurrent
requests queue instead of failing with "database is locked") and one reader connection (WAL lets it read
while the writer writes). A transaction is committed before its caller goes on: with synchronous=NORMAL in
WAL mode a commit survives SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from .base import Migrations, Statement, newer_schema, split_statements

log = logging.getLogger("ddx_omni.storage")


class SqliteDatabase:
    dialect = "sqlite"
    shared = False  # one process per file: what it finds unfinished at start was left by a dead process
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 30000) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._writer.execute("PRAGMA journal_mode=WAL")
        # A brand-new file only becomes a WAL database once something is written (as in the schema-version
        # table below); a second connection opened before that finds it locked. So: write first, then connect.
        async with self._writing() as writer:
            await writer.execute("CREATE TABLE IF NOT EXISTS storage_opened (at REAL)")
        self._reader = await self._connect()

    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: autocommit; transactions are opened explicitly with BEGIN IMMEDIATE.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        await conn.execute(f"PRAGMA synchronous={self.synchronous}")
        # Keep hot pages in memory however many unrelated rows the file holds: a bigger page cache, and reads
        # through mmap instead of a pread() per page (both are ceilings, not allocations).
        await conn.execute("PRAGMA cache_size=-65536")
        await conn.execute("PRAGMA mmap_size=268435456")
        return conn

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def describe(self) -> str:
        return str(self.path)

    async def migrate(self, migrations: Migrations) -> int:
        steps = migrations.steps(self.dialect)
        table = migrations.table
        async with self._writing() as writer:
            await writer.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
            row = await (await writer.execute(f"SELECT MAX(version) FROM {table}")).fetchone()
            current = (row[0] if row else None) or 0
            if current > len(steps):
                raise newer_schema(str(self.path), table, current, len(steps))
            for version in range(current, len(steps)):
                for statement in split_statements(steps[version]):
                    await writer.execute(statement)
                await writer.execute(f"INSERT INTO {table} (version) VALUES (?)", (version + 1,))
                log.info("%s: %s migrated to version %d", self.path, table, version + 1)
        return len(steps)

    async def transaction(self, statements: Iterable[Statement]) -> None:
        async with self._writing() as writer:
            for sql, params, many in statements:
                if many:
                    await writer.executemany(sql, params)
                else:
                    await writer.execute(sql, params)

    def _writing(self) -> _Immediate:
        if self._writer is None:
            raise RuntimeError("the database is not open")
        return _Immediate(self._writer, self._write_lock)

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise RuntimeError("the database is not open")
        # execute + fetchall in one job of the reader's thread: the statement is done (and its read snapshot
        # released) before another coroutine's query starts; interleaved open cursors would pin an old snapshot.
        return list(await self._reader.execute_fetchall(sql, params))  # type: ignore[arg-type]


class _Immediate:
    """`async with`: the writer lock, BEGIN IMMEDIATE, then COMMIT (or ROLLBACK on any exception)."""

    def __init__(self, writer: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self.writer, self.lock = writer, lock

    async def __aenter__(self) -> aiosqlite.Connection:
        await self.lock.acquire()
        try:
            await self.writer.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.writer

    async def __aexit__(self, exc_type: Any, *_: Any) -> None:
        try:
            await self.writer.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.lock.release()
