"""Vector stores: their files and batches (ingested in the background by `Ingestor`) and hybrid search."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.settings import FilesSettings
from ..embeddings.service import EmbeddingsService
from ..responses.schemas import bad_request, check_metadata, not_found
from . import filters as flt
from . import retrieval as rv
from . import store as st
from .db import Database
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
        self.ingestor = Ingestor(db, files, embeddings, on_written=self.changed, workers=config.ingest_workers)
        self._versions: dict[str, int] = {}
        self._indexes: dict[str, rv.StoreIndex] = {}
        self._touches: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        pending = await self.db.rows("SELECT vector_store_id, file_id FROM vs_files WHERE status = 'in_progress'")
        self.ingestor.start()
        for vector_store_id, file_id in pending:  # left unfinished by the previous process: start them again
            self.ingestor.submit(vector_store_id, file_id)

    async def stop(self) -> None:
        await self.ingestor.stop()

    def health(self) -> dict[str, Any]:
        return {"retrieval": "hybrid" if self.embeddings.engine is not None else "bm25",
                "ingest_queue": self.ingestor.pending}

    def changed(self, *vector_store_ids: str) -> None:
        """Chunks of these stores changed: their cached dense index is stale."""
        for vector_store_id in vector_store_ids:
            self._versions[vector_store_id] = self._versions.get(vector_store_id, 0) + 1

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
        await self.db.write(lambda c: st.create_store(c, vector_store_id, body))
        for file_id in request.file_ids:
            await self.attach(vector_store_id, file_id, None, chunking)
        return await self.get(vector_store_id)

    async def _body(self, vector_store_id: str) -> dict[str, Any]:
        rows = await self.db.rows("SELECT body FROM vector_stores WHERE id = ?", (vector_store_id,))
        if not rows:
            raise not_found(f"No vector store with id {vector_store_id!r}", "vector_store_id")
        return json.loads(rows[0][0])

    async def get(self, vector_store_id: str) -> dict[str, Any]:
        body = await self._body(vector_store_id)
        rows = await self.db.rows("SELECT status, usage_bytes FROM vs_files WHERE vector_store_id = ?",
                                  (vector_store_id,))
        return vector_store_object(vector_store_id, body, [r[0] for r in rows], sum(r[1] for r in rows))

    async def list_stores(self, *, after: str | None, before: str | None, limit: int, order: str) -> dict[str, Any]:
        rows, has_more = await self.db.read(lambda c: st.page(c, "vector_stores", "id", "1 = 1", (), after=after,
                                                              before=before, limit=limit, order=order))
        return page_object([await self.get(r[0]) for r in rows], has_more)

    async def update(self, vector_store_id: str, request: UpdateVectorStoreRequest) -> dict[str, Any]:
        body = await self._body(vector_store_id)
        given = request.model_fields_set
        if "name" in given:
            body["name"] = request.name or ""
        if "metadata" in given:
            body["metadata"] = check_metadata(request.metadata)
        if "expires_after" in given:
            body["expires_after"] = request.expires_after.model_dump() if request.expires_after else None
        body["last_active_at"] = now()
        await self.db.execute("UPDATE vector_stores SET body = ? WHERE id = ?", (st.dump(body), vector_store_id))
        return await self.get(vector_store_id)

    async def delete(self, vector_store_id: str) -> dict[str, Any]:
        if not await self.db.write(lambda c: st.drop_store(c, vector_store_id)):
            raise not_found(f"No vector store with id {vector_store_id!r}", "vector_store_id")
        self._indexes.pop(vector_store_id, None)
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
        row = (vector_store_id, file_id, batch_id, st.dump(attributes), st.dump(chunking_strategy(chunking)), now())
        inserted = await self.db.execute(
            "INSERT OR IGNORE INTO vs_files (vector_store_id, file_id, batch_id, status, attributes, chunking,"
            " created_at) VALUES (?, ?, ?, 'in_progress', ?, ?, ?)", row)
        if inserted:
            self.ingestor.submit(vector_store_id, file_id)
        return await self.get_file(vector_store_id, file_id)

    async def get_file(self, vector_store_id: str, file_id: str) -> dict[str, Any]:
        rows = await self.db.rows(f"SELECT {VS_FILE_COLUMNS} FROM vs_files WHERE vector_store_id = ? AND file_id = ?",
                                  (vector_store_id, file_id))
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
        rows, has_more = await self.db.read(lambda c: st.page(
            c, "vs_files", VS_FILE_COLUMNS, where, params, after=after, before=before, limit=limit, order=order,
            id_column="file_id"))
        return page_object([vs_file_object(r) for r in rows], has_more)

    async def update_file(self, vector_store_id: str, file_id: str, attributes: dict[str, Any] | None
                          ) -> dict[str, Any]:
        await self.get_file(vector_store_id, file_id)
        await self.db.execute("UPDATE vs_files SET attributes = ? WHERE vector_store_id = ? AND file_id = ?",
                              (st.dump(flt.check_attributes(attributes)), vector_store_id, file_id))
        return await self.get_file(vector_store_id, file_id)

    async def detach(self, vector_store_id: str, file_id: str) -> dict[str, Any]:
        await self.get_file(vector_store_id, file_id)
        await self.db.write(lambda c: st.detach_file(c, vector_store_id, file_id))
        self.changed(vector_store_id)
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
        await self.db.execute("INSERT INTO batches (id, vector_store_id, created_at) VALUES (?, ?, ?)",
                              (batch_id, vector_store_id, created))
        for file_id, attributes, chunking in entries:
            await self.attach(vector_store_id, file_id, attributes, chunking, batch_id)
        return await self.get_batch(vector_store_id, batch_id)

    async def get_batch(self, vector_store_id: str, batch_id: str) -> dict[str, Any]:
        rows = await self.db.rows("SELECT created_at, cancelled FROM batches WHERE id = ? AND vector_store_id = ?",
                                  (batch_id, vector_store_id))
        if not rows:
            await self._body(vector_store_id)
            raise not_found(f"No file batch {batch_id!r} in vector store {vector_store_id!r}", "batch_id")
        statuses = await self.db.rows("SELECT status FROM vs_files WHERE batch_id = ?", (batch_id,))
        return batch_object(batch_id, vector_store_id, rows[0][0], bool(rows[0][1]), [s for (s,) in statuses])

    async def cancel_batch(self, vector_store_id: str, batch_id: str) -> dict[str, Any]:
        """Files not yet ingested become `cancelled` (a file being written finishes or is dropped whole)."""
        await self.get_batch(vector_store_id, batch_id)

        def cancel(conn: Any) -> None:
            conn.execute("UPDATE batches SET cancelled = 1 WHERE id = ?", (batch_id,))
            conn.execute("UPDATE vs_files SET status = 'cancelled' WHERE batch_id = ? AND status = 'in_progress'",
                         (batch_id,))

        await self.db.write(cancel)
        return await self.get_batch(vector_store_id, batch_id)

    # ---- search ---------------------------------------------------------------------------------------------
    async def search(self, vector_store_ids: list[str], queries: list[str], *, filters: dict[str, Any] | None,
                     limit: int, ranking: RankingOptions | None) -> list[dict[str, Any]]:
        """The best chunks over all the stores and queries (a chunk found by several queries keeps its best)."""
        queries = [q for q in queries if q.strip()]
        if not queries:
            raise bad_request("query: must not be empty", "query")
        spec = flt.validate(filters) if filters else None
        stores = [(s, await self._searchable(s)) for s in vector_store_ids]
        if spec is not None:
            self._check_filter_keys(spec, [files for _, files in stores])
        vectors = await self.embeddings.embed_texts(queries, query=True)
        scored: dict[int, float] = {}
        meta: dict[int, dict[str, Any]] = {}
        for vector_store_id, files in stores:
            allowed = {f for f, info in files.items() if flt.matches(spec, info["attributes"])} if spec else None
            for n, query in enumerate(queries):
                found = await self._search_store(vector_store_id, query, None if vectors is None else vectors[n],
                                                 allowed, limit, ranking)
                for chunk_id, score in found.items():
                    if score > scored.get(chunk_id, -1.0):
                        scored[chunk_id], meta[chunk_id] = score, files
            self._touch(vector_store_id)
        threshold = ranking.score_threshold if ranking else 0.0
        return await self._results(rv.best(scored.items(), limit, threshold), meta)

    async def _searchable(self, vector_store_id: str) -> dict[str, dict[str, Any]]:
        """file id → {filename, attributes} of the store's completed files."""
        await self._body(vector_store_id)
        rows = await self.db.rows(
            "SELECT v.file_id, f.filename, v.attributes FROM vs_files AS v JOIN files AS f ON f.id = v.file_id"
            " WHERE v.vector_store_id = ? AND v.status = 'completed'", (vector_store_id,))
        return {r[0]: {"filename": r[1], "attributes": json.loads(r[2])} for r in rows}

    @staticmethod
    def _check_filter_keys(spec: dict[str, Any], stores: list[dict[str, dict[str, Any]]]) -> None:
        known = {key for files in stores for info in files.values() for key in info["attributes"]}
        missing = sorted(flt.keys(spec) - known)
        if missing and any(stores):
            raise bad_request(f"filters: no file in the searched vector stores has the attribute "
                              f"{', '.join(map(repr, missing))}", "filters")

    async def _search_store(self, vector_store_id: str, query: str, vector: np.ndarray | None,
                            allowed: set[str] | None, limit: int, ranking: RankingOptions | None) -> dict[int, float]:
        if allowed is not None and not allowed:
            return {}
        index = await self._index(vector_store_id)
        seq = await self.db.read(lambda c: st.store_seq(c, vector_store_id))
        if seq is None:
            return {}
        wanted = rv.candidates(limit)
        lex = await self.db.read(lambda c: rv.lexical(c, seq, index.size, query, allowed, wanted))
        if vector is None or index.vectors is None:
            return lex
        sims = rv.similarities(index, vector, allowed)
        sem = rv.dense(index, vector, allowed, wanted)
        weights = ranking.hybrid_search if ranking and ranking.hybrid_search else None
        text_w, embed_w = (weights.text_weight, weights.embedding_weight) if weights else (0.5, 0.5)
        if text_w + embed_w <= 0:
            raise bad_request("ranking_options.hybrid_search: the weights must not both be 0", "ranking_options")
        return rv.fuse(lex, sem, sims, index, text_w, embed_w)

    async def _index(self, vector_store_id: str) -> rv.StoreIndex:
        version = self._versions.get(vector_store_id, 0)
        cached = self._indexes.get(vector_store_id)
        if cached is not None and cached.version == version:
            return cached
        dims = self.embeddings.dims
        index = await self.db.read(lambda c: rv.load_index(c, vector_store_id, version, dims))
        self._indexes[vector_store_id] = index
        return index

    async def _results(self, top: list[tuple[int, float]], meta: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        if not top:
            return []
        marks = ",".join("?" * len(top))
        rows = await self.db.rows(f"SELECT id, file_id, text FROM chunks WHERE id IN ({marks})", [c for c, _ in top])
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

    def _touch(self, vector_store_id: str) -> None:
        """last_active_at moves forward (expiry counts from it), without making the search wait for the writer."""
        async def touch() -> None:
            def update(conn: Any) -> None:
                row = conn.execute("SELECT body FROM vector_stores WHERE id = ?", (vector_store_id,)).fetchone()
                if row is not None:
                    body = json.loads(row[0])
                    body["last_active_at"] = now()
                    conn.execute("UPDATE vector_stores SET body = ? WHERE id = ?", (st.dump(body), vector_store_id))

            await self.db.write(update)

        task = asyncio.create_task(touch())
        self._touches.add(task)
        task.add_done_callback(self._touches.discard)
