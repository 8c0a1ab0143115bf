"""The files component: uploaded bytes under `[files].dir`, their metadata in `[storage].url` (empty: the SQLite
file `[files].db_path`), and the vector stores built on them (`self.vector_stores`). With N replicas on one
PostgreSQL, `[files].dir` must be one volume that all of them mount (the bytes are not in the database).

Other capabilities (code interpreter) use `read_bytes(file_id)` and `create(filename, data, purpose)`; both
keep all file and database I/O off the event loop. Bytes are written to a temporary name and renamed, so a
file id never points at half a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import IO, Any

from ..core.errors import ApiError, PayloadTooLarge
from ..core.settings import Settings
from ..embeddings.service import EmbeddingsService
from ..responses.schemas import bad_request, not_found
from ..storage import Database, open_database
from . import store as st
from .schemas import PURPOSES, file_object, new_id, now, page_object
from .vector_stores import VectorStores

log = logging.getLogger("ddx_omni.files")

FILE_COLUMNS = "id, filename, bytes, purpose, created_at, expires_at"
SWEEP_INTERVAL_S = 60.0


class FilesService:
    name = "files"

    def __init__(self, settings: Settings, embeddings: EmbeddingsService) -> None:
        self.config = settings.files
        self.dir = Path(self.config.dir).expanduser()
        self.db = files_database(settings)
        self.vector_stores = VectorStores(self.db, self, embeddings, self.config)
        self.error: str | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # ---- component --------------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.dir.mkdir, parents=True, exist_ok=True)
            await self.db.open()
            await self.db.migrate(st.MIGRATIONS)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("files database %s could not be opened", self.db.describe())
            raise
        await self.vector_stores.start()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.vector_stores.stop()
        await self.db.close()

    def health(self) -> dict[str, Any]:
        state = "ready" if self.db.is_open else ("failed" if self.error else "idle")
        return {"state": state, "dir": str(self.dir), "db_path": self.db.describe(), "storage": self.db.dialect,
                "error": self.error,
                **self.vector_stores.health()}

    # ---- the contract other capabilities use -------------------------------------------------------------
    async def create(self, filename: str, data: bytes, purpose: str, expires_at: int | None = None) -> dict[str, Any]:
        """Store bytes as a new file; returns the file object."""
        if len(data) > self.config.max_bytes:
            raise self._too_large(len(data))
        return await self._store(filename, purpose, expires_at, lambda fh: fh.write(data))

    async def create_from_stream(self, filename: str, source: IO[bytes], size: int, purpose: str,
                                 expires_at: int | None = None) -> dict[str, Any]:
        """An upload's spooled temporary file, copied in a thread."""
        if size > self.config.max_bytes:
            raise self._too_large(size)
        return await self._store(filename, purpose, expires_at, lambda fh: shutil.copyfileobj(source, fh, 1 << 20))

    async def read_bytes(self, file_id: str) -> tuple[str, bytes]:
        meta = await self.get(file_id)
        data = await asyncio.to_thread(self.path(file_id).read_bytes)
        return meta["filename"], data

    async def read_head(self, file_id: str, size: int = 8192) -> bytes:
        def head() -> bytes:
            with self.path(file_id).open("rb") as fh:
                return fh.read(size)

        return await asyncio.to_thread(head)

    def path(self, file_id: str) -> Path:
        return self.dir / file_id

    # ---- /v1/files --------------------------------------------------------------------------------------
    async def get(self, file_id: str) -> dict[str, Any]:
        rows = await self.db.read(f"SELECT {FILE_COLUMNS} FROM files WHERE id = ?", (file_id,))
        if not rows:
            raise not_found(f"No file with id {file_id!r}", "file_id")
        return file_object(rows[0])

    async def list_files(self, *, purpose: str | None, after: str | None, limit: int, order: str) -> dict[str, Any]:
        where, params = ("purpose = ?", (purpose,)) if purpose else ("1 = 1", ())
        rows = await self.db.read(*st.page("files", FILE_COLUMNS, where, params, after=after, before=None,
                                           limit=limit, order=order))
        return page_object([file_object(r) for r in rows[:limit]], len(rows) > limit)

    async def delete(self, file_id: str) -> dict[str, Any]:
        """The file, and its chunks in every vector store that holds it."""
        await self.get(file_id)
        stores = await self.db.read("SELECT vector_store_id FROM vs_files WHERE file_id = ?", (file_id,))
        await self.db.transaction(st.delete_file(file_id, [s for (s,) in stores]))
        await asyncio.to_thread(self.path(file_id).unlink, missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

    # ---- internals ----------------------------------------------------------------------------------------
    async def _store(self, filename: str, purpose: str, expires_at: int | None, write: Any) -> dict[str, Any]:
        if purpose not in PURPOSES:
            raise bad_request(f"purpose: {purpose!r} is not one of {', '.join(PURPOSES)}", "purpose")
        filename = os.path.basename(filename.replace("\\", "/")) or "upload"
        file_id = new_id("file", "-")
        final = self.path(file_id)
        size = await asyncio.to_thread(_write_atomically, final, write)
        row = (file_id, filename, size, purpose, now(), expires_at)
        try:
            await self.db.transaction([(f"INSERT INTO files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", row, False)])
        except BaseException:
            await asyncio.to_thread(final.unlink, missing_ok=True)
            raise
        return file_object(row)

    def _too_large(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"The file has {size} bytes; at most {self.config.max_bytes} are accepted",
                               "raise [files].max_bytes (DDX_FILES__MAX_BYTES) or upload a smaller file")

    async def _sweep_forever(self) -> None:
        """Files past their `expires_after` are deleted like a DELETE would (chunks included)."""
        while True:
            try:
                for (file_id,) in await self.db.read("SELECT id FROM files WHERE expires_at <= ?", (now(),)):
                    with contextlib.suppress(ApiError):  # another replica's sweep deleted it first
                        await self.delete(file_id)
            except Exception:
                log.exception("expired-file sweep failed")
            await asyncio.sleep(SWEEP_INTERVAL_S)


def _write_atomically(final: Path, write: Any) -> int:
    partial = final.with_name(final.name + ".part")
    with partial.open("wb") as fh:
        write(fh)
        fh.flush()
        size = fh.tell()
    partial.replace(final)
    return size


def files_database(settings: Settings) -> Database:
    """[storage].url, or (empty) the SQLite file [files].db_path (its own file: long ingestion transactions
    never hold the responses writer lock)."""
    return open_database(settings.storage.url, default_sqlite=Path(settings.files.db_path).expanduser(),
                         synchronous=settings.responses.synchronous, pool_size=settings.storage.pool_size)


def create_service(settings: Settings, embeddings: EmbeddingsService) -> FilesService:
    return FilesService(settings, embeddings)
