"""The embeddings component: loads `[embeddings].model` in the background and embeds texts or token ids.

`[embeddings].model = ""` is a supported configuration, not a failure: the component is ready, reports
`retrieval: "bm25"` in /health, file search ranks lexically and /v1/embeddings answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import ModelUnavailable
from ..core.settings import Settings
from .engine import MlxEmbedder, Span

log = logging.getLogger("ddx_omni.embeddings")

LOAD_WAIT_S = 120.0


class EmbeddingsService:
    name = "embeddings"

    def __init__(self, settings: Settings) -> None:
        self.config = settings.embeddings
        self.model_id = self.config.model
        self.engine: MlxEmbedder | None = None
        self.error: str | None = None
        self.load_ms: int | None = None
        self._settled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.model_id)

    @property
    def dims(self) -> int | None:
        return self.engine.dims if self.engine is not None else None

    async def start(self) -> None:
        if not self.configured:
            self._settled.set()
            return
        self._task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            self.engine = await MlxEmbedder.load(self.model_id, self.model_id, self.config.pooling,
                                                 self.config.batch_tokens)
            log.info("embedding model %s loaded (%d dims)", self.model_id, self.engine.dims)
        except Exception as exc:  # reported in /health; file search goes on lexically
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("embedding model %s failed to load: %s", self.model_id, self.error)
        finally:
            self.load_ms = int((time.perf_counter() - started) * 1000)
            self._settled.set()

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def health(self) -> dict[str, Any]:
        if not self.configured:
            state, note = "ready", "no embedding model configured ([embeddings].model is empty): BM25 only"
        else:
            state = "loading" if not self._settled.is_set() else ("ready" if self.engine else "failed")
            note = None
        return {"state": state, "model": self.model_id or None, "dims": self.dims, "pooling": self.config.pooling,
                "retrieval": "hybrid" if self.engine is not None else "bm25", "load_ms": self.load_ms,
                "error": self.error, "note": note}

    async def ready(self) -> MlxEmbedder | None:
        """The engine once loading settled (None: no model, or it failed to load)."""
        try:
            await asyncio.wait_for(self._settled.wait(), LOAD_WAIT_S)
        except TimeoutError:
            return None
        return self.engine

    async def require(self) -> MlxEmbedder:
        engine = await self.ready()
        if engine is None:
            why = self.error or ("[embeddings].model is empty" if not self.configured else "still loading")
            raise ModelUnavailable(f"No embedding model is available: {why}",
                                   "set [embeddings].model (DDX_EMBEDDINGS__MODEL) to an MLX embedding model")
        return engine

    def spans(self, text: str) -> list[Span] | None:
        return self.engine.spans(text) if self.engine is not None else None

    async def embed_texts(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray | None:
        """Unit vectors for texts (queries get `[embeddings].query_prefix`); None without a model."""
        engine = await self.ready()
        if engine is None:
            return None
        prefix = self.config.query_prefix if query else ""
        ids = await asyncio.to_thread(lambda: [engine.encode(prefix + t) for t in texts])
        return await engine.embed_ids(ids)
