"""Vector stores: their files and batches (ingested in the background by `Ingestor`) and hybrid search over each
store's in-process index (index.py), brought up to the store's version in the database before each search."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import ApiError
from ..core.settings import FilesSettings
from ..embeddings.service import EmbeddingsService
from ..responses.schemas import bad_request, check_metadata, not_found
from ..storage import Database
from . import filters as flt
from . import retrieval as rv
from . import store as st
from .index import Indexes, StoreIndex
from .ingest import IngestFailed, Ingestor
from .parsing import UnsupportedFile, parser_for
from .schemas import (
    VS_FILE_COLUMNS,
    CreateBatchRequest,
    CreateVectorStoreRequest,
    RankingOptions,
    UpdateVectorStoreRequest,
    batch_object,
    chunking_strategy,
    deleted,
    new_id,
    now,
    page_object,
    vector_store_object,
    vs_file_object,
)

if TYPE_CHECKING:
    from .service import FilesService

log = logging.getLogger("ddx_omni.files.vector_stores")


class VectorStores:
    def __init__(self, db: Database, files: FilesService, embeddings: EmbeddingsService,
                 config: FilesSettings) -> None:
        self.db = db
        self.files = files
        self.embeddings = embeddings
        self.config = config
        self.ingestor = Ingestor(db, files, embeddings, workers=config.ingest_workers, on_idle=self._warm)
        self.indexes = Indexes(db, lambda: self.embeddings.dims)
        self._tasks: set[asyncio.Task[Any]] = set()  # background writes and index warm-ups, kept referenced

    async def start(self) -> None:
        """Files left `in_progress` are ingested again: by a process that died (SQLite), or on a shared
        database possibly by a live replica too; then both do the work and the second write changes nothing
        (a file's chunks are written only while it is `in_progress`)."""
        pending = await self.db.read("SELECT vector_store_id, file_id FROM vs_files WHERE status = 'in_progress'")
        self.ingestor.start()
        for vector_store_id, file_id in pending:
            self.ingestor.submit(vector_store_id, file_id)

    async def stop(self) -> None:
        await self.ingestor.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def health(self) -> dict[str, Any]:
        return {"retrieval": "hybrid" if self.embeddings.engine is not None else "bm25",
                "ingest_queue": self.ingestor.pending}

    # ---- stores -----------------------------------------------------------------------------------------
    async def create(self, request: CreateVectorStoreRequest) -> dict[str, Any]:
        chunking = chunking_strategy(request.chunking_strategy)
        for file_id in request.file_ids:
            await self.files.get(file_id)
        created = now()
        body = {"name": request.name or "", "description": request.description,
                "metadata": check_metadata(request.metadata), "created_at": created, "last_active_at": created,
                "expires_after": request.expires_after.model_dump() if request.expires_after else None}
        vector_store_id = new_id("vs")
        await self.db.transaction([("INSERT INTO vector_stores (id, body, last_active_at) VALUES (?, ?, ?)",
                                    (vector_store_id, st.dump(body), created), False)])
        for file_id in request.file_ids:
            await self.attach(vector_store_id, file_id, None, chunking)
        return await self.get(vector_store_id)

    async def _body(self, vector_store_id: str) -> dict[str, Any]:
        """The store's body, with its `last_active_at` and index `version` (404 if there is no such store)."""
        rows = await self.db.read("SELECT body, last_active_at, version FROM vector_stores WHERE id = ?",
                                  (vector_store_id,))
        if not rows:
            self.indexes.forget(vector_store_id)  # deleted, maybe by another replica: its index is freed here too
            raise not_found(f"No vector store with id {vector_store_id!r}", "vector_store_id")
        body = json.loads(rows[0][0])
        body["last_active_at"] = max(int(rows[0][1]), int(body.get("last_active_at", 0)))
        return {**body, "version": int(rows[0][2])}

    async def get(self, vector_store_id: str) -> dict[str, Any]:
        body = await self._body(vector_store_id)
        rows = await self.db.read("SELECT status, usage_bytes FROM vs_files WHERE vector_store_id = ?",
                                  (vector_store_id,))
        return vector_store_object(vector_store_id, body, [r[0] for r in rows], sum(r[1] for r in rows))

    async def list_stores(self, *, after: str | None, before: str | None, limit: int, order: str) -> dict[str, Any]:
        rows = await self.db.read(*st.page("vector_stores", "id", "1 = 1", (), after=after, before=before,
                                           limit=limit, order=order))
        return page_object([await self.get(r[0]) for r in rows[:limit]], len(rows) > limit)

    async def update(self, vector_store_id: str, request: UpdateVectorStoreRequest) -> dict[str, Any]:
        body = await self._body(vector_store_id)
        given = request.model_fields_set
        if "name" in given:
            body["name"] = request.name or ""
        if "metadata" in given:
            body["metadata"] = check_metadata(request.metadata)
        if "expires_after" in given:
            body["expires_after"] = request.expires_after.model_dump() if request.expires_after else None
        body.pop("version")
        await self.db.transaction([("UPDATE vector_stores SET body = ?, last_active_at = ? WHERE id = ?",
                                    (st.dump(body), now(), vector_store_id), False)])
        return await self.get(vector_store_id)

    async def delete(self, vector_store_id: str) -> dict[str, Any]:
        await self._body(vector_store_id)
        await self.db.transaction(st.drop_store(vector_store_id))
        self.indexes.forget(vector_store_id)
        return deleted(vector_store_id, "vector_store.deleted")

    # ---- files of a store ---------------------------------------------------------------------------------
    async def attach(self, vector_store_id: str, file_id: str, attributes: dict[str, Any] | None,
                     chunking: dict[str, Any] | None, batch_id: str | None = None) -> dict[str, Any]:
        """Add a file (its ingestion starts in the background); an already attached file is returned as is."""
        await self._body(vector_store_id)
        meta = await self.files.get(file_id)
        try:
            parser_for(meta["filename"], await self.files.read_head(file_id))
        except UnsupportedFile as exc:
            raise bad_request(str(exc), "file_id", code="unsupported_file") from None
        attributes = flt.check_attributes(attributes)
        if await self._vs_file(vector_store_id, file_id):
            return await self.get_file(vector_store_id, file_id)
        row = (vector_store_id, file_id, batch_id, st.dump(attributes), st.dump(chunking_strategy(chunking)), now())
        await self.db.transaction([(
            "INSERT INTO vs_files (vector_store_id, file_id, batch_id, status, attributes, chunking, created_at)"
            " VALUES (?, ?, ?, 'in_progress', ?, ?, ?) ON CONFLICT (vector_store_id, file_id) DO NOTHING", row, False)])
        self.ingestor.submit(vector_store_id, file_id)  # attached twice at once: the second ingestion is a no-op
        return await self.get_file(vector_store_id, file_id)

    async def _vs_file(self, vector_store_id: str, file_id: str) -> list[tuple[Any, ...]]:
        return await self.db.read(f"SELECT {VS_FILE_COLUMNS} FROM vs_files WHERE vector_store_id = ? AND file_id = ?",
                                  (vector_store_id, file_id))

    async def get_file(self, vector_store_id: str, file_id: str) -> dict[str, Any]:
        rows = await self._vs_file(vector_store_id, file_id)
        if not rows:
            await self._body(vector_store_id)
            raise not_found(f"No file {file_id!r} in vector store {vector_store_id!r}", "file_id")
        return vs_file_object(rows[0])

    async def list_files(self, vector_store_id: str, *, status: str | None, batch_id: str | None = None,
                         after: str | None, before: str | None, limit: int, order: str) -> dict[str, Any]:
        await self._body(vector_store_id)
        where, params = "vector_store_id = ?", [vector_store_id]
        if status:
            where, params = where + " AND status = ?", [*params, status]
        if batch_id:
            where, params = where + " AND batch_id = ?", [*params, batch_id]
        rows = await self.db.read(*st.page("vs_files", VS_FILE_COLUMNS, where, params, after=after, before=before,
                                           limit=limit, order=order, id_column="file_id"))
        return page_object([vs_file_object(r) for r in rows[:limit]], len(rows) > limit)

    async def update_file(self, vector_store_id: str, file_id: str, attributes: dict[str, Any] | None
                          ) -> dict[str, Any]:
        await self.get_file(vector_store_id, file_id)
        await self.db.transaction([("UPDATE vs_files SET attributes = ? WHERE vector_store_id = ? AND file_id = ?",
                                    (st.dump(flt.check_attributes(attributes)), vector_store_id, file_id), False)])
        return await self.get_file(vector_store_id, file_id)

    async def detach(self, vector_store_id: str, file_id: str) -> dict[str, Any]:
        await self.get_file(vector_store_id, file_id)
        await self.db.transaction(st.detach_file(vector_store_id, file_id))
        return deleted(file_id, "vector_store.file.deleted")

    async def file_content(self, vector_store_id: str, file_id: str) -> dict[str, Any]:
        """The parsed text of a file, as file search reads it."""
        await self.get_file(vector_store_id, file_id)
        try:
            text = await self.ingestor.parse(file_id)
        except IngestFailed as exc:
            raise bad_request(exc.message, "file_id", code=exc.code) from None
        return {"object": "list", "data": [{"type": "text", "text": text}], "has_more": False, "next_page": None}

    # ---- batches --------------------------------------------------------------------------------------------
    async def create_batch(self, vector_store_id: str, request: CreateBatchRequest) -> dict[str, Any]:
        await self._body(vector_store_id)
        if request.file_ids and request.files:
            raise bad_request("give either file_ids or files, not both", "files")
        entries = [(f, request.attributes, request.chunking_strategy) for f in request.file_ids or []]
        entries += [(f.file_id, f.attributes if f.attributes is not None else request.attributes,
                     f.chunking_strategy or request.chunking_strategy) for f in request.files or []]
        if not entries:
            raise bad_request("a batch needs file_ids or files", "file_ids")
        for file_id, attributes, chunking in entries:  # all checked before any is attached
            await self.files.get(file_id)
            flt.check_attributes(attributes)
            chunking_strategy(chunking)
        batch_id, created = new_id("vsfb"), now()
        await self.db.transaction([("INSERT INTO batches (id, vector_store_id, created_at) VALUES (?, ?, ?)",
                                    (batch_id, vector_store_id, created), False)])
        for file_id, attributes, chunking in entries:
            await self.attach(vector_store_id, file_id, attributes, chunking, batch_id)
        return await self.get_batch(vector_store_id, batch_id)

    async def get_batch(self, vector_store_id: str, batch_id: str) -> dict[str, Any]:
        rows = await self.db.read("SELECT created_at, cancelled FROM batches WHERE id = ? AND vector_store_id = ?",
                                  (batch_id, vector_store_id))
        if not rows:
            await self._body(vector_store_id)
            raise not_found(f"No file batch {batch_id!r} in vector store {vector_store_id!r}", "batch_id")
        statuses = await self.db.read("SELECT status FROM vs_files WHERE batch_id = ?", (batch_id,))
        return batch_object(batch_id, vector_store_id, rows[0][0], bool(rows[0][1]), [s for (s,) in statuses])

    async def cancel_batch(self, vector_store_id: str, batch_id: str) -> dict[str, Any]:
        """Files not yet ingested become `cancelled` (a file being written finishes or is dropped whole)."""
        await self.get_batch(vector_store_id, batch_id)
        await self.db.transaction([
            ("UPDATE batches SET cancelled = 1 WHERE id = ?", (batch_id,), False),
            ("UPDATE vs_files SET status = 'cancelled' WHERE batch_id = ? AND status = 'in_progress'",
             (batch_id,), False)])
        return await self.get_batch(vector_store_id, batch_id)

    # ---- search ---------------------------------------------------------------------------------------------
    async def search(self, vector_store_ids: list[str], queries: list[str], *, filters: dict[str, Any] | None,
                     limit: int, ranking: RankingOptions | None) -> list[dict[str, Any]]:
        """The best chunks over all the stores and queries (a chunk found by several queries keeps its best)."""
        queries = [q for q in queries if q.strip()]
        if not queries:
            raise bad_request("query: must not be empty", "query")
        spec = flt.validate(filters) if filters else None
        stores = [(s, *await self._searchable(s)) for s in vector_store_ids]
        if spec is not None:
            self._check_filter_keys(spec, [files for _, _, files in stores])
        vectors = await self.embeddings.embed_texts(queries, query=True)
        scored: dict[int, float] = {}
        meta: dict[int, dict[str, Any]] = {}
        for vector_store_id, version, files in stores:
            allowed = {f for f, info in files.items() if flt.matches(spec, info["attributes"])} if spec else None
            index = await self.indexes.get(vector_store_id, version)
            for n, query in enumerate(queries):
                found = await self._search_store(index, query, None if vectors is None else vectors[n],
                                                 allowed, limit, ranking)
                for chunk_id, score in found.items():
                    if score > scored.get(chunk_id, -1.0):
                        scored[chunk_id], meta[chunk_id] = score, files
            self._touch(vector_store_id)
        threshold = ranking.score_threshold if ranking else 0.0
        return await self._results(rv.best(scored.items(), limit, threshold), meta)

    async def _searchable(self, vector_store_id: str) -> tuple[int, dict[str, dict[str, Any]]]:
        """The store's index version, and file id → {filename, attributes} of its completed files."""
        version = (await self._body(vector_store_id))["version"]
        rows = await self.db.read(
            "SELECT v.file_id, f.filename, v.attributes FROM vs_files AS v JOIN files AS f ON f.id = v.file_id"
            " WHERE v.vector_store_id = ? AND v.status = 'completed'", (vector_store_id,))
        return version, {r[0]: {"filename": r[1], "attributes": json.loads(r[2])} for r in rows}

    @staticmethod
    def _check_filter_keys(spec: dict[str, Any], stores: list[dict[str, dict[str, Any]]]) -> None:
        known = {key for files in stores for info in files.values() for key in info["attributes"]}
        missing = sorted(flt.keys(spec) - known)
        if missing and any(stores):
            raise bad_request(f"filters: no file in the searched vector stores has the attribute "
                              f"{', '.join(map(repr, missing))}", "filters")

    async def _search_store(self, index: StoreIndex, query: str, vector: np.ndarray | None,
                            allowed: set[str] | None, limit: int, ranking: RankingOptions | None) -> dict[int, float]:
        if allowed is not None and not allowed:
            return {}
        wanted = rv.candidates(limit)
        lex = rv.lexical(index, self.indexes.tokenize, query, allowed, wanted)
        if vector is None or index.vectors is None:
            return lex
        sims = rv.similarities(index, vector, allowed)
        sem = rv.dense(index, vector, allowed, wanted)
        weights = ranking.hybrid_search if ranking and ranking.hybrid_search else None
        text_w, embed_w = (weights.text_weight, weights.embedding_weight) if weights else (0.5, 0.5)
        if text_w + embed_w <= 0:
            raise bad_request("ranking_options.hybrid_search: the weights must not both be 0", "ranking_options")
        return rv.fuse(lex, sem, sims, index, text_w, embed_w)

    async def _results(self, top: list[tuple[int, float]], meta: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        if not top:
            return []
        marks = ",".join("?" * len(top))
        rows = await self.db.read(f"SELECT id, file_id, text FROM chunks WHERE id IN ({marks})", [c for c, _ in top])
        found = {r[0]: (r[1], r[2]) for r in rows}
        results = []
        for chunk_id, score in top:
            if chunk_id not in found:  # deleted between ranking and reading
                continue
            file_id, text = found[chunk_id]
            info = meta[chunk_id].get(file_id, {"filename": "", "attributes": {}})
            results.append({"file_id": file_id, "filename": info["filename"], "score": round(score, 6),
                            "attributes": info["attributes"], "text": text})
        return results

    def _warm(self, vector_store_ids: set[str]) -> None:
        """Ingestion is idle: bring these stores' indexes up to date now, so the next search here does not wait
        for the tokenising (on another replica, its first search does)."""
        async def warm(vector_store_id: str) -> None:
            with contextlib.suppress(ApiError):  # the store was deleted meanwhile
                await self.indexes.get(vector_store_id, (await self._body(vector_store_id))["version"])

        for vector_store_id in vector_store_ids:
            self._keep(asyncio.create_task(warm(vector_store_id)))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _touch(self, vector_store_id: str) -> None:
        """last_active_at moves forward (expiry counts from it), without making the search wait for the writer."""
        task = asyncio.create_task(self.db.transaction([
            ("UPDATE vector_stores SET last_active_at = ? WHERE id = ?", (now(), vector_store_id), False)]))
        self._keep(task)
