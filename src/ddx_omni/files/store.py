"""The files database: uploaded files, vector stores, their files and batches, chunks and one FTS5 index per store.

Each vector store has its own FTS5 table (`fts_<seq>`, external content over `chunks`), so BM25's document
statistics (N, document frequencies, average length) are the store's own and a store is dropped in one
statement. Chunks hold their text and, when an embedding model is loaded, a float32 vector.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE files (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        filename TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        purpose TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER
    );
    CREATE INDEX files_by_purpose ON files (purpose, seq);
    CREATE INDEX files_expiring ON files (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE vector_stores (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL               -- name, description, metadata, expires_after, created_at, last_active_at
    );
    CREATE TABLE batches (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        vector_store_id TEXT NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        cancelled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE vs_files (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        vector_store_id TEXT NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
        file_id TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        batch_id TEXT,
        status TEXT NOT NULL,
        last_error TEXT,
        attributes TEXT NOT NULL,
        chunking TEXT NOT NULL,
        usage_bytes INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        UNIQUE (vector_store_id, file_id)
    );
    CREATE INDEX vs_files_by_file ON vs_files (file_id);
    CREATE INDEX vs_files_by_batch ON vs_files (batch_id) WHERE batch_id IS NOT NULL;
    CREATE INDEX vs_files_unfinished ON vs_files (status) WHERE status = 'in_progress';
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,
        vector_store_id TEXT NOT NULL,
        file_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        text TEXT NOT NULL,
        lead TEXT NOT NULL DEFAULT '',   -- the file's name and opening words, indexed beside every chunk
        embedding BLOB
    );
    CREATE INDEX chunks_by_file ON chunks (vector_store_id, file_id, position);
    """,
)


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
    if current > len(MIGRATIONS):
        raise RuntimeError(f"files database has schema version {current}, newer than this ddx-omni knows "
                           f"({len(MIGRATIONS)}); upgrade ddx-omni or use another [files].db_path")
    for version in range(current, len(MIGRATIONS)):
        for statement in (s.strip() for s in MIGRATIONS[version].split(";")):
            if statement:
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def fts_table(seq: int) -> str:
    return f"fts_{int(seq)}"


@dataclass
class ChunkRow:
    position: int
    text: str
    embedding: bytes | None
    lead: str = ""


# ---- writes (each runs inside Database.write's transaction) -----------------------------------------------
def insert_chunks(conn: sqlite3.Connection, store_seq: int, vector_store_id: str, file_id: str,
                  chunks: Sequence[ChunkRow]) -> None:
    first = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM chunks").fetchone()[0]
    rows = [(first + n, vector_store_id, file_id, c.position, c.text, c.lead, c.embedding)
            for n, c in enumerate(chunks)]
    conn.executemany("INSERT INTO chunks (id, vector_store_id, file_id, position, text, lead, embedding)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(f"INSERT INTO {fts_table(store_seq)} (rowid, text, lead) VALUES (?, ?, ?)",
                     [(row[0], row[4], row[5]) for row in rows])


def delete_chunks(conn: sqlite3.Connection, store_seq: int, vector_store_id: str, file_id: str) -> None:
    rows = conn.execute("SELECT id, text, lead FROM chunks WHERE vector_store_id = ? AND file_id = ?",
                        (vector_store_id, file_id)).fetchall()
    table = fts_table(store_seq)
    conn.executemany(f"INSERT INTO {table} ({table}, rowid, text, lead) VALUES ('delete', ?, ?, ?)", rows)
    conn.execute("DELETE FROM chunks WHERE vector_store_id = ? AND file_id = ?", (vector_store_id, file_id))


def create_store(conn: sqlite3.Connection, vector_store_id: str, body: dict[str, Any]) -> int:
    cur = conn.execute("INSERT INTO vector_stores (id, body) VALUES (?, ?)", (vector_store_id, dump(body)))
    seq = int(cur.lastrowid or 0)
    # porter over unicode61: English stemming (search/searching), case and diacritics folded
    conn.execute(f"CREATE VIRTUAL TABLE {fts_table(seq)} USING fts5(text, lead, content='chunks',"
                 f" content_rowid='id',"
                 f" tokenize='porter unicode61')")
    return seq


def drop_store(conn: sqlite3.Connection, vector_store_id: str) -> bool:
    row = conn.execute("SELECT seq FROM vector_stores WHERE id = ?", (vector_store_id,)).fetchone()
    if row is None:
        return False
    conn.execute(f"DROP TABLE IF EXISTS {fts_table(row[0])}")
    conn.execute("DELETE FROM chunks WHERE vector_store_id = ?", (vector_store_id,))
    conn.execute("DELETE FROM vector_stores WHERE id = ?", (vector_store_id,))
    return True


def detach_file(conn: sqlite3.Connection, vector_store_id: str, file_id: str) -> bool:
    seq = store_seq(conn, vector_store_id)
    if seq is None:
        return False
    delete_chunks(conn, seq, vector_store_id, file_id)
    return conn.execute("DELETE FROM vs_files WHERE vector_store_id = ? AND file_id = ?",
                        (vector_store_id, file_id)).rowcount > 0


def delete_file(conn: sqlite3.Connection, file_id: str) -> bool:
    """The file, its rows in every vector store and their chunks (the caller removes the bytes)."""
    stores = conn.execute("SELECT vector_store_id FROM vs_files WHERE file_id = ?", (file_id,)).fetchall()
    for (vector_store_id,) in stores:
        detach_file(conn, vector_store_id, file_id)
    return conn.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0


def store_seq(conn: sqlite3.Connection, vector_store_id: str) -> int | None:
    row = conn.execute("SELECT seq FROM vector_stores WHERE id = ?", (vector_store_id,)).fetchone()
    return None if row is None else int(row[0])


# ---- reads --------------------------------------------------------------------------------------------------
def page(conn: sqlite3.Connection, table: str, columns: str, where: str, params: Sequence[Any], *,
         after: str | None, before: str | None, limit: int, order: str, id_column: str = "id"
         ) -> tuple[list[tuple[Any, ...]], bool]:
    """Keyset pagination over `seq`: `after`/`before` are ids of the same set; returns (rows, has_more)."""
    direction, forward, backward = ("ASC", ">", "<") if order == "asc" else ("DESC", "<", ">")
    sql = f"SELECT {columns} FROM {table} WHERE {where}"
    args = list(params)
    for cursor, compare in ((after, forward), (before, backward)):
        if cursor:
            sql += f" AND seq {compare} COALESCE((SELECT seq FROM {table} WHERE {where} AND {id_column} = ?), " \
                   f"{'-1' if compare == '>' else '9223372036854775807'})"
            args += [*params, cursor]
    sql += f" ORDER BY seq {direction} LIMIT ?"
    args.append(limit + 1)
    rows = conn.execute(sql, args).fetchall()
    return rows[:limit], len(rows) > limit
