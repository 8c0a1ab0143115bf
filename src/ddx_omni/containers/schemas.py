"""Wire shapes of the containers API (OpenAI's): request bodies and the container / container file objects."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MEMORY_BYTES = {"1g": 1024 ** 3, "4g": 4 * 1024 ** 3, "16g": 16 * 1024 ** 3, "64g": 64 * 1024 ** 3}
MemoryLimit = Literal["1g", "4g", "16g", "64g"]


class ExpiresAfter(BaseModel):
    anchor: Literal["last_active_at"] = "last_active_at"
    minutes: int = Field(ge=1, le=10080)


class CreateContainerRequest(BaseModel):
    # skills and network_policy are accepted as OpenAI's SDK sends them; the network is always off here
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=256)
    file_ids: list[str] = Field(default_factory=list, max_length=100)
    expires_after: ExpiresAfter | None = None
    memory_limit: MemoryLimit | None = None


class AddFileRequest(BaseModel):
    file_id: str = Field(min_length=1)


class ExecuteRequest(BaseModel):
    """Replica to replica: run code in a container the receiving replica runs (not part of OpenAI's API)."""

    code: str


def container_object(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "object": "container", "name": row["name"], "status": row["status"],
            "created_at": row["created_at"], "last_active_at": row["last_active_at"],
            "expires_after": {"anchor": "last_active_at", "minutes": row["expires_minutes"]},
            "memory_limit": row["memory_limit"], "network_policy": {"type": "disabled", "allowed_domains": None}}


def file_object(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "object": "container.file", "container_id": row["container_id"],
            "path": f"/mnt/data/{row['path']}", "bytes": row["bytes"], "created_at": row["created_at"],
            "source": row["source"]}


def deleted_object(object_id: str, kind: str) -> dict[str, Any]:
    return {"id": object_id, "object": f"{kind}.deleted", "deleted": True}


def page(rows: list[dict[str, Any]], after: str | None, limit: int, order: str) -> tuple[list[dict[str, Any]], bool]:
    """One page of an oldest-first list: `order`, then after the row with id `after`, at most `limit` rows."""
    ordered = rows if order == "asc" else list(reversed(rows))
    if after is not None:
        ids = [r["id"] for r in ordered]
        ordered = ordered[ids.index(after) + 1:] if after in ids else []
    return ordered[:limit], len(ordered) > limit
