"""`[storage].url` → a database: `sqlite:///abs/path`, `sqlite://rel/path`, or `postgresql://user:pw@host/db`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import Database
from .postgres import PostgresDatabase
from .sqlite import SqliteDatabase

SCHEMES = ("sqlite", "postgresql", "postgres")


@dataclass(frozen=True)
class StorageUrl:
    scheme: str  # "sqlite" | "postgresql"
    path: Path | None = None  # SQLite's file
    dsn: str | None = None  # PostgreSQL's URL, as libpq takes it


def parse_url(url: str) -> StorageUrl:
    """Raise ValueError (with what is accepted) for anything else."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"storage url {url.split('@')[-1]!r}: expected sqlite:///path or postgresql://…")
    if scheme == "sqlite":
        if not rest:
            raise ValueError("storage url: sqlite:/// needs a file path")
        return StorageUrl("sqlite", path=Path(rest).expanduser())
    return StorageUrl("postgresql", dsn=url)


def open_database(url: str, *, default_sqlite: Path | None = None, synchronous: str = "NORMAL",
                  pool_size: int = 10) -> Database:
    """The (not yet opened) database of a URL; an empty URL is the SQLite file `default_sqlite` (a component's
    own path setting, today's behaviour). `synchronous` is SQLite's, `pool_size` PostgreSQL's."""
    if not url:
        if default_sqlite is None:
            raise ValueError("storage url: empty, and this component has no default SQLite file")
        return SqliteDatabase(default_sqlite, synchronous=synchronous)
    parsed = parse_url(url)
    if parsed.path is not None:
        return SqliteDatabase(parsed.path, synchronous=synchronous)
    assert parsed.dsn is not None
    return PostgresDatabase(parsed.dsn, pool_size=pool_size)
