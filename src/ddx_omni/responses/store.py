"""SQLite persistence of responses, their items and conversations (aiosqlite, WAL, versioned schema).

One writer connection behind an asyncio lock (every write is one `BEGIN IMMEDIATE … COMMIT`, so concurrent
requests queue instead of failing with "database is locked") and one reader connection (WAL lets it read
while the writer writes). A response and all its items are written in one transaction, committed before the
client is answered: a row is either whole or absent, and an acknowledged response survives SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger("ddx_omni.responses.store")

# Each entry migrates the schema from version i to i+1; never edit one that has shipped, append instead.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        previous_response_id TEXT,
        conversation_id TEXT,
        status TEXT NOT NULL,
        background INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        metadata TEXT NOT NULL
    );
    CREATE TABLE items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        response_id TEXT,
        conversation_id TEXT,
        kind INTEGER NOT NULL,      -- 0 input, 1 output: a response's inputs come before its outputs
        position INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX items_by_response ON items (response_id, kind, position);
    CREATE INDEX items_by_conversation ON items (conversation_id, seq);
    CREATE INDEX items_by_id ON items (id);
    CREATE INDEX responses_unfinished ON responses (status) WHERE status IN ('queued', 'in_progress');
    """,
)

INPUT, OUTPUT = 0, 1

# Rebuild a chain with one recursive query: walk previous_response_id by primary key (depth N → N lookups),
# then fetch each member's items through items_by_response. Unrelated rows are never touched.
CHAIN_SQL = """
WITH RECURSIVE chain(id, depth) AS (
    SELECT id, 0 FROM responses WHERE id = ?
    UNION ALL
    SELECT r.previous_response_id, chain.depth + 1
    FROM responses AS r JOIN chain ON r.id = chain.id
    WHERE r.previous_response_id IS NOT NULL
)
SELECT items.body FROM chain JOIN items ON items.response_id = chain.id
ORDER BY chain.depth DESC, items.kind, items.position
"""


@dataclass
class ItemRow:
    """An item to write: the JSON body, and where it belongs."""

    body: dict[str, Any]
    kind: int = INPUT


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Store:
    """The database. `open()` creates it (and its directories) and migrates; `close()` checkpoints."""

    def __init__(self, path: Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 30000) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self.schema_version = 0

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def open(self) -> None:
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._writer.execute("PRAGMA journal_mode=WAL")
        await self._migrate()
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

    async def _migrate(self) -> None:
        assert self._writer is not None
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                await self._writer.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = await (await self._writer.execute("SELECT MAX(version) FROM schema_version")).fetchone()
                current = (row[0] if row else None) or 0
                if current > len(MIGRATIONS):
                    raise RuntimeError(f"database {self.path} has schema version {current}, newer than this "
                                       f"ddx-omni knows ({len(MIGRATIONS)}); upgrade ddx-omni or use another "
                                       f"[responses].db_path")
                for version in range(current, len(MIGRATIONS)):
                    for statement in _statements(MIGRATIONS[version]):
                        await self._writer.execute(statement)
                    await self._writer.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
                    log.info("responses database migrated to schema version %d", version + 1)
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            self.schema_version = len(MIGRATIONS)

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    # ---- the write path ----------------------------------------------------------------------------------
    async def _transaction(self, statements: Iterable[tuple[str, Sequence[Any] | Iterable[Sequence[Any]], bool]]
                           ) -> None:
        """Run (sql, params, many) statements as one IMMEDIATE transaction under the writer lock."""
        if self._writer is None:
            raise RuntimeError("responses store is not open")
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                for sql, params, many in statements:
                    if many:
                        await self._writer.executemany(sql, params)  # type: ignore[arg-type]
                    else:
                        await self._writer.execute(sql, params)  # type: ignore[arg-type]
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise

    async def save_response(self, response: dict[str, Any], items: Sequence[ItemRow], *,
                            conversation_id: str | None = None, store_response: bool = True) -> None:
        """Write (or replace) a response with its items, and append them to its conversation, atomically."""
        rid = response["id"]
        statements: list[tuple[str, Any, bool]] = []
        if store_response:
            statements.append(
                ("INSERT OR REPLACE INTO responses (id, previous_response_id, conversation_id, status, background,"
                 " created_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (rid, response.get("previous_response_id"), conversation_id, response["status"],
                  int(bool(response.get("background"))), response["created_at"], _dump(response)), False))
            if response.get("background"):  # only a background response is saved twice (queued, then final)
                statements.append(("DELETE FROM items WHERE response_id = ?", (rid,), False))
        positions = {INPUT: 0, OUTPUT: 0}
        rows = []
        for item in items:
            rows.append((item.body["id"], rid if store_response else None, conversation_id, item.kind,
                         positions[item.kind], _dump(item.body)))
            positions[item.kind] += 1
        if rows and (store_response or conversation_id):
            statements.append(("INSERT INTO items (id, response_id, conversation_id, kind, position, body)"
                               " VALUES (?, ?, ?, ?, ?, ?)", rows, True))
        if statements:
            await self._transaction(statements)

    async def update_status(self, response: dict[str, Any]) -> None:
        """Rewrite a stored response's body and status (background progress); items are untouched."""
        await self._transaction([("UPDATE responses SET status = ?, body = ? WHERE id = ?",
                                  (response["status"], _dump(response), response["id"]), False)])

    async def delete_response(self, response_id: str) -> bool:
        if not await self.response_exists(response_id):
            return False
        # Items that also belong to a conversation stay in it: deleting a response does not rewrite one.
        await self._transaction([
            ("DELETE FROM responses WHERE id = ?", (response_id,), False),
            ("DELETE FROM items WHERE response_id = ? AND conversation_id IS NULL", (response_id,), False),
            ("UPDATE items SET response_id = NULL WHERE response_id = ?", (response_id,), False),
        ])
        return True

    async def fail_unfinished(self, reason: str) -> int:
        """Responses left queued/in_progress by a previous process can never finish: mark them failed."""
        rows = await self._read("SELECT body FROM responses WHERE status IN ('queued', 'in_progress')")
        updates = []
        for (body,) in rows:
            response = json.loads(body)
            response["status"] = "failed"
            response["error"] = {"code": "server_error", "message": reason}
            updates.append(("failed", _dump(response), response["id"]))
        if updates:
            await self._transaction([("UPDATE responses SET status = ?, body = ? WHERE id = ?", updates, True)])
        return len(updates)

    # ---- conversations -------------------------------------------------------------------------------
    async def create_conversation(self, conversation: dict[str, Any], items: Sequence[dict[str, Any]]) -> None:
        cid = conversation["id"]
        statements: list[tuple[str, Any, bool]] = [
            ("INSERT INTO conversations (id, created_at, metadata) VALUES (?, ?, ?)",
             (cid, conversation["created_at"], _dump(conversation["metadata"])), False)]
        if items:
            statements.append(("INSERT INTO items (id, response_id, conversation_id, kind, position, body)"
                               " VALUES (?, NULL, ?, 0, ?, ?)",
                               [(i["id"], cid, n, _dump(i)) for n, i in enumerate(items)], True))
        await self._transaction(statements)

    async def add_conversation_items(self, conversation_id: str, items: Sequence[dict[str, Any]]) -> None:
        await self._transaction([("INSERT INTO items (id, response_id, conversation_id, kind, position, body)"
                                  " VALUES (?, NULL, ?, 0, ?, ?)",
                                  [(i["id"], conversation_id, n, _dump(i)) for n, i in enumerate(items)], True)])

    async def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        rows = await self._read("SELECT id, created_at, metadata FROM conversations WHERE id = ?", (conversation_id,))
        if not rows:
            return None
        cid, created_at, metadata = rows[0]
        return {"id": cid, "object": "conversation", "created_at": created_at, "metadata": json.loads(metadata)}

    async def update_conversation(self, conversation_id: str, metadata: dict[str, str]) -> None:
        await self._transaction([("UPDATE conversations SET metadata = ? WHERE id = ?",
                                  (_dump(metadata), conversation_id), False)])

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._transaction([
            ("DELETE FROM conversations WHERE id = ?", (conversation_id,), False),
            ("DELETE FROM items WHERE conversation_id = ? AND response_id IS NULL", (conversation_id,), False),
            ("UPDATE items SET conversation_id = NULL WHERE conversation_id = ?", (conversation_id,), False),
        ])

    async def delete_conversation_item(self, conversation_id: str, item_id: str) -> bool:
        rows = await self._read("SELECT seq FROM items WHERE conversation_id = ? AND id = ?",
                                (conversation_id, item_id))
        if not rows:
            return False
        seqs = [(seq,) for (seq,) in rows]
        await self._transaction([
            ("DELETE FROM items WHERE seq = ? AND response_id IS NULL", seqs, True),
            ("UPDATE items SET conversation_id = NULL WHERE seq = ?", seqs, True),
        ])
        return True

    async def conversation_items(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every item of a conversation, oldest first (its history for a response)."""
        return _loads_all(await self._read("SELECT body FROM items WHERE conversation_id = ? ORDER BY seq",
                                           (conversation_id,)))

    async def conversation_item(self, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        rows = await self._read("SELECT body FROM items WHERE conversation_id = ? AND id = ? ORDER BY seq DESC LIMIT 1",
                                (conversation_id, item_id))
        return json.loads(rows[0][0]) if rows else None

    async def page_conversation_items(self, conversation_id: str, *, after: str | None, limit: int,
                                      order: str) -> tuple[list[dict[str, Any]], bool]:
        return await self._page("conversation_id = ?", (conversation_id,), after=after, limit=limit, order=order)

    # ---- responses: reads -------------------------------------------------------------------------------
    async def get_response(self, response_id: str) -> dict[str, Any] | None:
        rows = await self._read("SELECT body FROM responses WHERE id = ?", (response_id,))
        return json.loads(rows[0][0]) if rows else None

    async def response_exists(self, response_id: str) -> bool:
        return bool(await self._read("SELECT 1 FROM responses WHERE id = ?", (response_id,)))

    async def chain_items(self, response_id: str) -> list[dict[str, Any]]:
        """The input and output items of `response_id` and all its predecessors, oldest first."""
        return _loads_all(await self._read(CHAIN_SQL, (response_id,)))

    async def find_item(self, item_id: str) -> dict[str, Any] | None:
        rows = await self._read("SELECT body FROM items WHERE id = ? ORDER BY seq DESC LIMIT 1", (item_id,))
        return json.loads(rows[0][0]) if rows else None

    async def page_input_items(self, response_id: str, *, after: str | None, limit: int,
                               order: str) -> tuple[list[dict[str, Any]], bool]:
        return await self._page("response_id = ? AND kind = 0", (response_id,), after=after, limit=limit, order=order)

    async def count_responses(self) -> int:
        rows = await self._read("SELECT COUNT(*) FROM responses")
        return int(rows[0][0])

    async def _page(self, where: str, params: tuple[Any, ...], *, after: str | None, limit: int,
                    order: str) -> tuple[list[dict[str, Any]], bool]:
        """Keyset pagination over items.seq: `after` is an item id of the same set, `order` asc|desc."""
        direction, compare = ("ASC", ">") if order == "asc" else ("DESC", "<")
        sql = f"SELECT body FROM items WHERE {where}"
        args: list[Any] = list(params)
        if after:
            sql += f" AND seq {compare} (SELECT seq FROM items WHERE {where} AND id = ? ORDER BY seq LIMIT 1)"
            args += [*params, after]
        sql += f" ORDER BY seq {direction} LIMIT ?"
        args.append(limit + 1)
        rows = await self._read(sql, tuple(args))
        return _loads_all(rows[:limit]), len(rows) > limit

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise RuntimeError("responses store is not open")
        # execute + fetchall in one job of the reader's thread: the statement is done (and its read snapshot
        # released) before another coroutine's query starts; interleaved open cursors would pin an old snapshot.
        return list(await self._reader.execute_fetchall(sql, params))


def _loads_all(rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Parse many JSON bodies in one json.loads call: a long history costs one C-level parse, not N."""
    return json.loads("[" + ",".join(row[0] for row in rows) + "]")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip() and not s.strip().startswith("--")]
