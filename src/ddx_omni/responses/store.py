"""Persistence of responses, their items and conversations, on any storage backend (storage/: SQLite, PostgreSQL).

A response and all its items are written in one transaction, committed before the client is answered: a row
is either whole or absent, and an acknowledged response survives SIGKILL. A background response's row names
its owner (the replica running it), so that other replicas can tell a live one from one a dead replica left.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage import Database, Migrations, Statement
from ..storage.replicas import MIGRATIONS as REPLICA_MIGRATIONS
from ..storage.sqlite import SqliteDatabase

_V1 = """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        previous_response_id TEXT,
        conversation_id TEXT,
        status TEXT NOT NULL,
        background INTEGER NOT NULL DEFAULT 0,
        created_at {real} NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL,
        metadata TEXT NOT NULL
    );
    CREATE TABLE items (
        seq {seq},
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
"""
_V2 = "ALTER TABLE responses ADD COLUMN owner TEXT"  # the replica running a background response

# Each entry migrates the schema from version i to i+1; never edit one that has shipped, append instead.
MIGRATIONS = Migrations(
    "schema_version",
    sqlite=(_V1.format(real="REAL", seq="INTEGER PRIMARY KEY AUTOINCREMENT"), _V2),
    postgresql=(_V1.format(real="DOUBLE PRECISION", seq="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"), _V2),
)
UNFINISHED = "status IN ('queued', 'in_progress')"

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
    """The responses tables of one database. `open()` opens it and migrates; `close()` closes it.
    A Path is taken as a SQLite file (the embedded default)."""

    def __init__(self, db: Database | Path) -> None:
        self.db: Database = SqliteDatabase(db) if isinstance(db, Path) else db
        self.schema_version = 0

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def open(self) -> None:
        await self.db.open()
        try:
            await self.db.migrate(REPLICA_MIGRATIONS)  # running_owner and the sweep join against it
            self.schema_version = await self.db.migrate(MIGRATIONS)
        except BaseException:
            await self.db.close()
            raise

    async def close(self) -> None:
        await self.db.close()

    @property
    def is_open(self) -> bool:
        return self.db.is_open

    @property
    def path(self) -> str:
        return self.db.describe()

    async def _transaction(self, statements: list[Statement]) -> None:
        await self.db.transaction(statements)

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self.db.read(sql, params)

    # ---- the write path ----------------------------------------------------------------------------------
    async def save_response(self, response: dict[str, Any], items: Sequence[ItemRow], *,
                            conversation_id: str | None = None, store_response: bool = True,
                            owner: str | None = None) -> None:
        """Write (or replace) a response with its items, and append them to its conversation, atomically.
        `owner`: the replica running it (background responses, while they run)."""
        rid = response["id"]
        statements: list[Statement] = []
        if store_response:
            statements.append(
                ("INSERT INTO responses (id, previous_response_id, conversation_id, status, background,"
                 " created_at, body, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                 " status = excluded.status, body = excluded.body, owner = excluded.owner",
                 (rid, response.get("previous_response_id"), conversation_id, response["status"],
                  int(bool(response.get("background"))), float(response["created_at"]), _dump(response), owner),
                 False))
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

    async def fail_unfinished(self, reason: str, *, live_owners: tuple[str, Sequence[Any]] | None = None) -> int:
        """Mark failed the responses left queued/in_progress by a process that can no longer finish them: all of
        them (one process per database), or those whose owner is not among `live_owners` (SQL selecting live
        replica ids, and its parameters). The update re-checks the status: one that finished meanwhile stays."""
        sql, params = f"SELECT body FROM responses WHERE {UNFINISHED}", ()
        if live_owners is not None:
            sql += f" AND (owner IS NULL OR owner NOT IN ({live_owners[0]}))"
            params = tuple(live_owners[1])
        updates = []
        for (body,) in await self._read(sql, params):
            response = json.loads(body)
            response["status"] = "failed"
            response["error"] = {"code": "server_error", "message": reason}
            updates.append(("failed", _dump(response), response["id"]))
        if updates:
            await self._transaction([(f"UPDATE responses SET status = ?, body = ? WHERE id = ? AND {UNFINISHED}",
                                      updates, True)])
        return len(updates)

    async def running_owner(self, response_id: str, live_owners: tuple[str, Sequence[Any]]) -> tuple[str, str] | None:
        """(owner id, owner URL) of a stored response still running on a live replica; None otherwise."""
        rows = await self._read(f"SELECT p.id, p.url FROM responses AS r JOIN replicas AS p ON p.id = r.owner"
                                f" WHERE r.id = ? AND r.{UNFINISHED} AND p.id IN ({live_owners[0]})",
                                (response_id, *live_owners[1]))
        return (rows[0][0], rows[0][1]) if rows else None

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

    async def response_status(self, response_id: str) -> str | None:
        rows = await self._read("SELECT status FROM responses WHERE id = ?", (response_id,))
        return rows[0][0] if rows else None

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


def _loads_all(rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Parse many JSON bodies in one json.loads call: a long history costs one C-level parse, not N."""
    return json.loads("[" + ",".join(row[0] for row in rows) + "]")

