"""Background ingestion of vector-store files: parse → chunk → embed → write, one file per job, off the loop.

Jobs sit in an asyncio queue worked by `[files].ingest_workers` tasks; parsing and chunking run in threads,
embedding on the embedding engine's thread, writing on the database's writer thread. A file's chunks are
written in one transaction together with its `completed` status, and only while its row is still
`in_progress`: a file detached, deleted or cancelled meanwhile leaves no chunk behind. A file that cannot be
read fails alone, with `last_error` saying why.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..embeddings.service import EmbeddingsService
from ..storage import Database
from . import store as st
from .chunking import ApproximateTokens, Chunk, TokenCounter, chunk_text
from .parsing import InvalidFile, UnsupportedFile, parser_for

if TYPE_CHECKING:
    from .service import FilesService

log = logging.getLogger("ddx_omni.files.ingest")

EMBED_GROUP = 64  # chunks per embedding call: a cancelled file stops within one group
LEAD_CHARS = 300  # the opening words indexed beside every chunk (a title, a NAME line, an abstract)


class IngestFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Dropped(Exception):
    """The file left `in_progress` (cancelled, detached, deleted) while it was being ingested."""


class _EngineTokens:
    def __init__(self, embeddings: EmbeddingsService) -> None:
        self.embeddings = embeddings

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self.embeddings.spans(text) or []


class Ingestor:
    def __init__(self, db: Database, files: FilesService, embeddings: EmbeddingsService, workers: int = 1,
                 on_idle: Callable[[set[str]], None] | None = None) -> None:
        self.db = db
        self.files = files
        self.embeddings = embeddings
        self.on_idle = on_idle  # the queue ran empty: these stores got chunks since the last call
        self._written: set[str] = set()
        self.workers = workers
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def submit(self, vector_store_id: str, file_id: str) -> None:
        self._queue.put_nowait((vector_store_id, file_id))

    async def _work(self) -> None:
        while True:
            vector_store_id, file_id = await self._queue.get()
            try:
                await self.ingest(vector_store_id, file_id)
                self._written.add(vector_store_id)
            except asyncio.CancelledError:
                raise
            except Dropped:
                pass
            except IngestFailed as exc:
                await self._fail(vector_store_id, file_id, exc.code, exc.message)
            except Exception as exc:
                log.exception("ingesting %s into %s failed", file_id, vector_store_id)
                await self._fail(vector_store_id, file_id, "server_error", f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()
            if self._queue.empty() and self._written and self.on_idle is not None:
                self.on_idle(self._written)
                self._written = set()

    async def ingest(self, vector_store_id: str, file_id: str) -> None:
        chunking = await self._pending_chunking(vector_store_id, file_id)
        if chunking is None:
            return  # detached, deleted or cancelled before its turn
        text = await self.parse(file_id)
        engine = await self.embeddings.ready()
        counter: TokenCounter = _EngineTokens(self.embeddings) if engine is not None else ApproximateTokens()
        chunks = await asyncio.to_thread(chunk_text, text, counter, chunking["max_chunk_size_tokens"],
                                         chunking["chunk_overlap_tokens"])
        if not chunks:
            raise IngestFailed("invalid_file", "the file contains no text")
        vectors = await self._embed(vector_store_id, file_id, chunks)
        lead = f"{await self._filename(file_id)}\n{text[:LEAD_CHARS]}"
        rows = [st.ChunkRow(n, c.text, None if vectors is None else vectors[n], lead) for n, c in enumerate(chunks)]
        await self.db.transaction(st.write_chunks(vector_store_id, file_id, rows))

    async def parse(self, file_id: str) -> str:
        filename, data = await self.files.read_bytes(file_id)
        try:
            parse = parser_for(filename, data[:8192])
            return await asyncio.to_thread(parse, data)
        except UnsupportedFile as exc:
            raise IngestFailed("unsupported_file", str(exc)) from None
        except InvalidFile as exc:
            raise IngestFailed("invalid_file", f"{filename}: {exc}") from None

    async def _filename(self, file_id: str) -> str:
        return str((await self.files.get(file_id))["filename"])

    async def _pending_chunking(self, vector_store_id: str, file_id: str) -> dict[str, Any] | None:
        rows = await self.db.read("SELECT chunking FROM vs_files WHERE vector_store_id = ? AND file_id = ?"
                                  " AND status = 'in_progress'", (vector_store_id, file_id))
        return json.loads(rows[0][0])["static"] if rows else None

    async def _embed(self, vector_store_id: str, file_id: str, chunks: list[Chunk]) -> list[bytes] | None:
        engine = self.embeddings.engine
        if engine is None:
            return None
        out: list[bytes] = []
        for start in range(0, len(chunks), EMBED_GROUP):
            if await self._pending_chunking(vector_store_id, file_id) is None:
                raise Dropped
            group = [c.text for c in chunks[start:start + EMBED_GROUP]]
            ids = await asyncio.to_thread(_encode_all, engine, group)
            vectors = await engine.embed_ids(ids)
            out += [v.astype("<f4").tobytes() for v in vectors]
        return out

    async def _fail(self, vector_store_id: str, file_id: str, code: str, message: str) -> None:
        error = st.dump({"code": code, "message": message[:1000]})
        await self.db.transaction([("UPDATE vs_files SET status = 'failed', last_error = ? WHERE vector_store_id = ?"
                                    " AND file_id = ? AND status = 'in_progress'", (error, vector_store_id, file_id),
                                    False)])


def _encode_all(engine: Any, texts: list[str]) -> list[list[int]]:
    return [engine.encode(t) for t in texts]

