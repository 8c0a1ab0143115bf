"""Each vector store's search index in this process's memory (BM25 postings and unit vectors), kept in step
with the database by the store's `version`, which every chunk write and delete bumps in its transaction.

A search reads the version it is about to search (`SELECT … version`); when it differs from the index held,
the index is brought up to date before searching. That is how each replica sharing one PostgreSQL sees what
another one ingested. The refresh is incremental: the index is assembled from per-file parts (tokenised
postings and vectors), and only the files whose chunks changed (a new first chunk id) are read and tokenised
again; the store-wide postings (IDF, average length, both orders) are then rebuilt in numpy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..storage import Database
from . import lexical as lx

READ_FILES = 500  # file ids per `IN (…)` when reading chunks (PostgreSQL takes at most 32,767 parameters)


@dataclass
class FileSegment:
    """One file's chunks, read and tokenised once."""

    file_id: str
    ids: np.ndarray  # int64 chunk ids, by position
    postings: lx.FilePostings
    vectors: np.ndarray | None  # float32 (n, dims), L2-normalised


@dataclass
class StoreIndex:
    """A store's chunks: ids (ascending), their files, unit vectors, and the BM25 postings over the same rows."""

    version: int
    ids: np.ndarray  # int64 chunk ids, ascending
    file_of: np.ndarray  # int32 index into `files`
    files: list[str]
    vectors: np.ndarray | None  # float32 (n, dims), L2-normalised; None without an embedding model
    postings: lx.Postings
    vocab: lx.Vocabulary
    file_index: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])

    def rows_of(self, allowed: set[str] | None) -> np.ndarray | None:
        """A boolean mask of the rows whose file is in `allowed` (None: every row)."""
        if allowed is None:
            return None
        keep = np.array([self.file_index[f] for f in allowed if f in self.file_index], dtype=np.int32)
        return np.isin(self.file_of, keep)


def segment(file_id: str, rows: Sequence[tuple[Any, ...]], dims: int | None, tokenize: lx.Tokenizer,
            vocab: lx.Vocabulary) -> FileSegment:
    """rows: (id, text, lead, embedding) of one file's chunks, by position."""
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    postings = lx.file_postings([r[1] for r in rows], rows[0][2] if rows else "", tokenize, vocab)
    vectors = None
    if dims:
        vectors = np.zeros((len(rows), dims), dtype=np.float32)
        for n, row in enumerate(rows):
            if row[3] is not None and len(row[3]) == dims * 4:  # a vector of another model counts as none
                vectors[n] = np.frombuffer(row[3], dtype=np.float32)
    return FileSegment(file_id, ids, postings, vectors)


def assemble(version: int, segments: Sequence[FileSegment], vocab: lx.Vocabulary, dims: int | None) -> StoreIndex:
    files = [s.file_id for s in segments]
    sizes = np.array([s.ids.size for s in segments], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if segments else sizes
    ids = _cat([s.ids for s in segments], np.int64)
    order = np.argsort(ids, kind="stable")  # chunk ids of files written at once on PostgreSQL may interleave
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    rows = rank[_cat([s.postings.rows + off for s, off in zip(segments, offsets, strict=True)], np.int64)]
    postings = lx.build(_cat([s.postings.terms for s in segments], np.int64), rows,
                        _cat([s.postings.freqs for s in segments], np.float64),
                        _cat([s.postings.lengths for s in segments], np.int64)[order], len(vocab))
    vectors = None
    if dims:
        vectors = (np.concatenate([s.vectors for s in segments if s.vectors is not None])
                   if segments else np.zeros((0, dims), np.float32))[order]
    file_of = np.repeat(np.arange(len(files), dtype=np.int32), sizes)[order]
    return StoreIndex(version, ids[order], file_of, files, vectors, postings, vocab,
                      {f: n for n, f in enumerate(files)})


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


@dataclass
class _Held:
    """What this process keeps for one store between versions."""

    vocab: lx.Vocabulary = field(default_factory=lx.Vocabulary)
    segments: dict[tuple[str, int], FileSegment] = field(default_factory=dict)
    index: StoreIndex | None = None
    dims: int | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Indexes:
    """store id → its index at the version asked for; `dims()` is the embedding model's (None: no vectors)."""

    def __init__(self, db: Database, dims: Callable[[], int | None]) -> None:
        self.db = db
        self.dims = dims
        self.tokenize = lx.Tokenizer()
        self._held: dict[str, _Held] = {}

    def current(self, vector_store_id: str) -> StoreIndex | None:
        """The index last built for the store, whatever its version (benchmarks time its parts with it)."""
        held = self._held.get(vector_store_id)
        return None if held is None else held.index

    def forget(self, vector_store_id: str) -> None:
        self._held.pop(vector_store_id, None)

    async def get(self, vector_store_id: str, version: int) -> StoreIndex:
        held = self._held.setdefault(vector_store_id, _Held())
        async with held.lock:
            if held.index is not None and held.index.version == version and held.dims == self.dims():
                return held.index
            dims = self.dims()
            if dims != held.dims:  # another model: every vector is read again
                held.segments, held.dims = {}, dims
            await self._refresh(vector_store_id, held)
            held.index = await asyncio.to_thread(assemble, version, list(held.segments.values()), held.vocab, dims)
            return held.index

    async def _refresh(self, vector_store_id: str, held: _Held) -> None:
        """Drop the parts of files gone or rewritten; read and tokenise the files new to this process."""
        groups = await self.db.read("SELECT file_id, MIN(id) FROM chunks WHERE vector_store_id = ? GROUP BY file_id",
                                    (vector_store_id,))
        current = {(f, int(first)) for f, first in groups}
        held.segments = {key: s for key, s in held.segments.items() if key in current}
        missing = sorted({f for f, first in current if (f, first) not in held.segments})
        for start in range(0, len(missing), READ_FILES):
            part = missing[start:start + READ_FILES]
            rows = await self.db.read(
                f"SELECT file_id, id, text, lead, embedding FROM chunks WHERE vector_store_id = ?"
                f" AND file_id IN ({','.join('?' * len(part))}) ORDER BY file_id, position", (vector_store_id, *part))
            built = await asyncio.to_thread(self._segments, rows, held)
            held.segments.update({(s.file_id, int(s.ids.min())): s for s in built})
        held.segments = dict(sorted(held.segments.items(), key=lambda item: item[0][1]))

    def _segments(self, rows: Sequence[tuple[Any, ...]], held: _Held) -> list[FileSegment]:
        by_file: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_file.setdefault(row[0], []).append(row[1:])
        return [segment(f, chunks, held.dims, self.tokenize, held.vocab) for f, chunks in by_file.items()]
