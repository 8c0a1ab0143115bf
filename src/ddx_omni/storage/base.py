"""The small protocol every store (responses, and later files, vector stores, containers) is written against.

SQL is written once, in the dialect both engines share (`?` placeholders, ON CONFLICT upserts, recursive CTEs);
each backend turns it into what its driver wants. Only the schema (types, identity columns) is per dialect, so
each component gives its migrations for both, with the same version numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# (sql, params, many): one statement, or one statement run for each params tuple of an iterable
Statement = tuple[str, Sequence[Any] | Iterable[Sequence[Any]], bool]


@dataclass(frozen=True)
class Migrations:
    """One component's schema history. Entry i migrates from version i to i+1; never edit a shipped entry,
    append one. `table` records the version (one table per component, so components migrate independently)."""

    table: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.sqlite) != len(self.postgresql):
            raise ValueError(f"{self.table}: SQLite and PostgreSQL must have the same migration versions")

    def __len__(self) -> int:
        return len(self.sqlite)

    def steps(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


class Database(Protocol):
    """An open database. `shared` is true when several processes (replicas) may use it at once."""

    dialect: str  # "sqlite" | "postgresql"
    shared: bool
    now_sql: str  # an SQL expression: the database's clock, seconds since the epoch (one clock for all replicas)

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def is_open(self) -> bool: ...

    def describe(self) -> str:
        """Where the data is, for /health and logs (never a password)."""
        ...

    async def migrate(self, migrations: Migrations) -> int:
        """Bring one component's schema to its newest version (once, even with N replicas starting); → version."""
        ...

    async def transaction(self, statements: Iterable[Statement]) -> None:
        """Run the statements as one transaction: all committed, or none."""
        ...

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


def split_statements(script: str) -> list[str]:
    """A migration script's statements (no `;` inside literals in migrations, by convention)."""
    return [s.strip() for s in script.split(";") if s.strip() and not s.strip().startswith("--")]


def newer_schema(where: str, table: str, current: int, known: int) -> RuntimeError:
    return RuntimeError(f"database {where} has {table} {current}, newer than this ddx-omni knows ({known}); "
                        f"upgrade ddx-omni or point [storage].url elsewhere")
