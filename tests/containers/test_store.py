"""The SQLite default stays where it was: a containers.db made before storage/ is adopted as it is."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the schema ddx-omni wrote before the containers moved onto storage/ (no version table, no owner)
LEGACY = """
CREATE TABLE containers (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
    created_at INTEGER NOT NULL, last_active_at INTEGER NOT NULL, expires_minutes INTEGER NOT NULL,
    memory_limit TEXT NOT NULL);
CREATE TABLE files (id TEXT PRIMARY KEY, container_id TEXT NOT NULL, path TEXT NOT NULL, bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL, source TEXT NOT NULL, UNIQUE (container_id, path));
"""


async def test_an_earlier_containers_db_is_adopted(make_service: Callable[..., Any], tmp_path: Path) -> None:
    data_dir = tmp_path / "containers"
    (data_dir / "cntr_old").mkdir(parents=True)
    (data_dir / "cntr_old" / "kept.txt").write_bytes(b"kept")
    now = int(time.time())
    with sqlite3.connect(data_dir / "containers.db") as db:
        db.executescript(LEGACY)
        db.execute("INSERT INTO containers VALUES ('cntr_old', 7, 'old', 'running', ?, ?, 20, '1g')", (now, now))
    service = await make_service()
    assert service.store.db.describe() == str(data_dir / "containers.db")  # the same file, not a new one
    assert (await service.get("cntr_old"))["name"] == "old"
    listed = await service.list_files("cntr_old", None, 20, "asc")  # rows rebuilt from the directory
    assert [f["path"] for f in listed["data"]] == ["/mnt/data/kept.txt"]
    made = await service.create("new")
    assert (await service.store.container(made["id"]))["seq"] == 8  # uids keep counting from the old rows
