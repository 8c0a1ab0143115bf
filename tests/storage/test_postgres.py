"""The PostgreSQL backend itself: URL parsing, migrations (once, even when replicas start together), one
transaction per response, and the chain rebuilt in one indexed query (EXPLAIN on a filled, analyzed table)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ddx_omni.responses.store import CHAIN_SQL, MIGRATIONS, ItemRow, Store
from ddx_omni.storage import open_database, parse_url
from ddx_omni.storage.postgres import PostgresDatabase, redact, to_numbered
from ddx_omni.storage.sqlite import SqliteDatabase
from tests.conftest import fresh_database


@pytest.fixture
def pg_url(postgres: Any) -> str:
    return fresh_database(postgres)


def test_urls_pick_the_backend(tmp_path: Path) -> None:
    assert parse_url("sqlite:///var/lib/r.db").path == Path("/var/lib/r.db")
    assert isinstance(open_database("", default_sqlite=tmp_path / "r.db"), SqliteDatabase)
    assert isinstance(open_database("postgresql://u:p@h/db"), PostgresDatabase)
    for bad in ("mysql://x", "r.db", "sqlite://"):
        with pytest.raises(ValueError):
            parse_url(bad)
    assert redact("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    assert to_numbered("a = ? AND b IN (?, ?)") == "a = $1 AND b IN ($2, $3)"


async def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    stores = [Store(open_database(pg_url, pool_size=2)) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        conn = await asyncpg.connect(pg_url)
        versions = [row[0] for row in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
        await conn.execute("INSERT INTO schema_version VALUES (99)")
        await conn.close()
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        with pytest.raises(RuntimeError, match="newer than this ddx-omni"):
            await Store(open_database(pg_url)).open()
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_response_and_its_items_commit_together_or_not_at_all(pg_url: str) -> None:
    store = Store(open_database(pg_url))
    await store.open()
    try:
        response = {"id": "resp_a", "status": "completed", "created_at": 1.0, "background": False, "output": []}
        bad_item = ItemRow({"id": None, "type": "message"})  # NOT NULL id: the transaction fails half-way
        with pytest.raises(asyncpg.NotNullViolationError):
            await store.save_response(response, [ItemRow({"id": "msg_1", "type": "message"}), bad_item])
        assert await store.get_response("resp_a") is None and await store.find_item("msg_1") is None
        await store.save_response(response, [ItemRow({"id": "msg_1", "type": "message"})])
        assert await store.chain_items("resp_a") == [{"id": "msg_1", "type": "message"}]
    finally:
        await store.close()


async def test_the_chain_is_one_indexed_query(pg_url: str) -> None:
    store = Store(open_database(pg_url))
    await store.open()
    try:
        previous = None
        for n in range(100):  # a chain of depth 100 among 20,000 unrelated responses
            body = {"id": f"resp_{n}", "status": "completed", "created_at": float(n), "background": False,
                    "previous_response_id": previous}
            await store.save_response(body, [ItemRow({"id": f"in_{n}"}), ItemRow({"id": f"out_{n}"}, 1)])
            previous = body["id"]
        items = await store.chain_items("resp_99")
        assert [i["id"] for i in items[:4]] == ["in_0", "out_0", "in_1", "out_1"] and len(items) == 200
        conn = await asyncpg.connect(pg_url)
        await conn.execute("INSERT INTO responses (id, status, created_at, body) SELECT 'other_' || n, 'completed',"
                           " n, '{}' FROM generate_series(1, 20000) AS n")
        await conn.execute("INSERT INTO items (id, response_id, kind, position, body) SELECT 'i_' || n,"
                           " 'other_' || (n / 2), n % 2, 0, '{}' FROM generate_series(2, 40001) AS n")
        await conn.execute("ANALYZE")
        plan = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {to_numbered(CHAIN_SQL)}", "resp_99"))
        await conn.close()
    finally:
        await store.close()
    scans = _nodes(plan[0]["Plan"])
    tables = {(node["Node Type"], node.get("Relation Name")) for node in scans if node.get("Relation Name")}
    assert not any(kind == "Seq Scan" for kind, _ in tables), tables
    assert {name for _, name in tables} == {"responses", "items"}, tables


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(child for sub in node.get("Plans", []) for child in _nodes(sub))]
