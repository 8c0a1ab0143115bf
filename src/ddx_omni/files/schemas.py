"""Wire shapes of /v1/files and /v1/vector_stores: request models, validation of their parts, object builders.

Request models accept unknown fields (the SDKs send some this server has no use for). Builders emit every
field of the openai SDK's FileObject, VectorStore, VectorStoreFile and VectorStoreFileBatch types.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..responses.schemas import bad_request
from .chunking import AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS

PURPOSES = ("assistants", "assistants_output", "batch", "batch_output", "fine-tune", "fine-tune-results",
            "vision", "user_data", "evals")
MAX_RESULTS = 50


def new_id(prefix: str, sep: str = "_") -> str:
    """`file-…` (OpenAI's file ids use a dash), `vs_…`, `vsfb_…`: a millisecond clock, then randomness, so
    ids sort by creation time."""
    return f"{prefix}{sep}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


def now() -> int:
    return int(time.time())


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ExpiresAfter(_Open):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class CreateVectorStoreRequest(_Open):
    name: str | None = None
    description: str | None = None
    file_ids: list[str] = Field(default_factory=list)
    chunking_strategy: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    expires_after: ExpiresAfter | None = None


class UpdateVectorStoreRequest(_Open):
    name: str | None = None
    metadata: dict[str, Any] | None = None
    expires_after: ExpiresAfter | None = None


class AttachFileRequest(_Open):
    file_id: str
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class UpdateFileAttributesRequest(_Open):
    attributes: dict[str, Any] | None


class BatchFile(_Open):
    file_id: str
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class CreateBatchRequest(_Open):
    file_ids: list[str] | None = None
    files: list[BatchFile] | None = None
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class HybridSearch(_Open):
    embedding_weight: float = Field(0.5, ge=0)
    text_weight: float = Field(0.5, ge=0)


class RankingOptions(_Open):
    ranker: Literal["none", "auto", "default-2024-11-15"] | None = None
    score_threshold: float = Field(0.0, ge=0, le=1)
    hybrid_search: HybridSearch | None = None


class SearchRequest(_Open):
    query: str | list[str]
    filters: dict[str, Any] | None = None
    max_num_results: int = Field(10, ge=1, le=MAX_RESULTS)
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False


def chunking_strategy(spec: dict[str, Any] | None, param: str = "chunking_strategy") -> dict[str, Any]:
    """auto (800 tokens, 400 overlap) or static{max_chunk_size_tokens 100–4096, chunk_overlap_tokens ≤ half}."""
    if spec is None or spec.get("type") == "auto":
        return {"type": "static", "static": {"max_chunk_size_tokens": AUTO_MAX_TOKENS,
                                             "chunk_overlap_tokens": AUTO_OVERLAP_TOKENS}}
    if spec.get("type") != "static" or not isinstance(spec.get("static"), dict):
        raise bad_request(f"{param}: must be {{'type': 'auto'}} or {{'type': 'static', 'static': {{...}}}}", param)
    static = spec["static"]
    size = static.get("max_chunk_size_tokens", AUTO_MAX_TOKENS)
    overlap = static.get("chunk_overlap_tokens", AUTO_OVERLAP_TOKENS)
    if not isinstance(size, int) or not 100 <= size <= 4096:
        raise bad_request(f"{param}.static.max_chunk_size_tokens: must be an integer from 100 to 4096", param)
    if not isinstance(overlap, int) or not 0 <= overlap <= size // 2:
        raise bad_request(f"{param}.static.chunk_overlap_tokens: must be an integer from 0 to half of "
                          f"max_chunk_size_tokens ({size // 2})", param)
    return {"type": "static", "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}}


def file_object(row: tuple[Any, ...]) -> dict[str, Any]:
    """From (id, filename, bytes, purpose, created_at, expires_at)."""
    file_id, filename, size, purpose, created_at, expires_at = row
    return {"id": file_id, "object": "file", "bytes": size, "created_at": created_at, "filename": filename,
            "purpose": purpose, "status": "processed", "expires_at": expires_at, "status_details": None}


def counts(statuses: list[str]) -> dict[str, int]:
    found = {s: statuses.count(s) for s in ("in_progress", "completed", "failed", "cancelled")}
    return {**found, "total": len(statuses)}


def vector_store_object(vector_store_id: str, body: dict[str, Any], statuses: list[str],
                        usage_bytes: int) -> dict[str, Any]:
    file_counts = counts(statuses)
    expires_after = body.get("expires_after")
    expires_at = body["last_active_at"] + expires_after["days"] * 86400 if expires_after else None
    if expires_at is not None and expires_at <= now():
        status = "expired"
    else:
        status = "in_progress" if file_counts["in_progress"] else "completed"
    return {"id": vector_store_id, "object": "vector_store", "created_at": body["created_at"],
            "name": body.get("name") or "", "description": body.get("description"), "usage_bytes": usage_bytes,
            "file_counts": file_counts, "status": status, "last_active_at": body["last_active_at"],
            "expires_after": expires_after, "expires_at": expires_at, "metadata": body.get("metadata") or {}}


VS_FILE_COLUMNS = "file_id, vector_store_id, status, last_error, attributes, chunking, usage_bytes, created_at"


def vs_file_object(row: tuple[Any, ...]) -> dict[str, Any]:
    import json

    file_id, vector_store_id, status, last_error, attributes, chunking, usage_bytes, created_at = row
    return {"id": file_id, "object": "vector_store.file", "vector_store_id": vector_store_id, "status": status,
            "usage_bytes": usage_bytes, "created_at": created_at,
            "last_error": json.loads(last_error) if last_error else None,
            "attributes": json.loads(attributes), "chunking_strategy": json.loads(chunking)}


def batch_object(batch_id: str, vector_store_id: str, created_at: int, cancelled: bool,
                 statuses: list[str]) -> dict[str, Any]:
    file_counts = counts(statuses)
    if file_counts["in_progress"]:
        status = "in_progress"
    elif cancelled:
        status = "cancelled"
    elif file_counts["total"] and file_counts["failed"] == file_counts["total"]:
        status = "failed"
    else:
        status = "completed"
    return {"id": batch_id, "object": "vector_store.files_batch", "vector_store_id": vector_store_id,
            "created_at": created_at, "status": status, "file_counts": file_counts}


def page_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}


def deleted(object_id: str, kind: str) -> dict[str, Any]:
    return {"id": object_id, "object": kind, "deleted": True}

