"""The shared backend: PostgreSQL through an asyncpg connection pool, for N replicas on one database.

Every transaction runs on one pooled connection inside BEGIN … COMMIT; the commit has returned (and so is
durable, with PostgreSQL's default synchronous_commit) before the caller answers its client. Migrations run
under a transaction-scoped advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .base import Migrations, Statement, newer_schema, split_statements

log = logging.getLogger("ddx_omni.storage")

_PLACEHOLDER = re.compile(r"\?")


def to_numbered(sql: str) -> str:
    """`?` placeholders (the shared dialect) → asyncpg's `$1, $2, …` (no `?` appears in our literals)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def redact(dsn: str) -> str:
    """The URL without its password (for /health and logs)."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresDatabase:
    dialect = "postgresql"
    shared = True  # N replicas: what is unfinished may belong to a live replica
    now_sql = "extract(epoch from clock_timestamp())::float8"

    def __init__(self, dsn: str, pool_size: int = 10, connect_timeout_s: float = 10.0) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._sql: dict[str, str] = {}  # translated statements, by their shared-dialect text

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size,
                                               timeout=self.connect_timeout_s)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self._pool = None

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database is not open")
        return self._pool

    def describe(self) -> str:
        return redact(self.dsn)

    def _translate(self, sql: str) -> str:
        translated = self._sql.get(sql)
        if translated is None:
            translated = self._sql[sql] = to_numbered(sql)
        return translated

    async def migrate(self, migrations: Migrations) -> int:
        steps, table = migrations.steps(self.dialect), migrations.table
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", table)
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
            current = await conn.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {table}")
            if current > len(steps):
                raise newer_schema(self.describe(), table, current, len(steps))
            for version in range(current, len(steps)):
                for statement in split_statements(steps[version]):
                    await conn.execute(statement)
                await conn.execute(f"INSERT INTO {table} (version) VALUES ($1)", version + 1)
                log.info("%s: %s migrated to version %d", self.describe(), table, version + 1)
        return len(steps)

    async def transaction(self, statements: Iterable[Statement]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            for sql, params, many in statements:
                if many:
                    await conn.executemany(self._translate(sql), list(params))
                else:
                    await conn.execute(self._translate(sql), *params)

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self.pool.fetch(self._translate(sql), *params)]
