"""SQLite access for the files capability: one writer thread and one reader thread, each with its own connection.

Ingestion writes thousands of chunk rows in one transaction while searches read: in WAL mode a reader
connection sees the last committed state without waiting for the writer, and giving each connection a thread
of its own keeps every SQLite call (and FTS5's ranking work) off the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    # isolation_level=None: autocommit; the writer opens its transactions explicitly (BEGIN IMMEDIATE)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=268435456")
    return conn


class Database:
    """`await db.write(fn)` runs fn(conn) inside one IMMEDIATE transaction; `await db.read(fn)` on the reader."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="files-db-w")
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="files-db-r")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    async def open(self, migrate: Callable[[sqlite3.Connection], None]) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)

        def open_writer() -> sqlite3.Connection:
            conn = _connect(self.path, self.synchronous)
            conn.execute("PRAGMA journal_mode=WAL")
            _in_transaction(conn, migrate)
            return conn

        self._writer = await self._on(self._writer_pool, open_writer)
        self._reader = await self._on(self._reader_pool, lambda: _connect(self.path, self.synchronous))

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def close(self) -> None:
        for conn, pool in ((self._reader, self._reader_pool), (self._writer, self._writer_pool)):
            if conn is not None:
                await self._on(pool, conn.close)
        self._reader = self._writer = None
        self._writer_pool.shutdown(wait=False)
        self._reader_pool.shutdown(wait=False)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._require(self._writer)
        return await self._on(self._writer_pool, lambda: _in_transaction(conn, fn))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._require(self._reader)
        return await self._on(self._reader_pool, lambda: fn(conn))

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self.read(lambda conn: conn.execute(sql, params).fetchall())

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement in its own transaction; returns the number of rows it changed."""
        return await self.write(lambda conn: conn.execute(sql, params).rowcount)

    def _require(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise RuntimeError(f"files database {self.path} is not open")
        return conn

    @staticmethod
    async def _on(pool: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn)


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
