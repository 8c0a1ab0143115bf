"""Hybrid retrieval over one vector store: BM25 from its FTS5 table, cosine over its vectors, fused in [0, 1].

Scores mean the same thing whatever the store's size, so `score_threshold` is usable:
- lexical: FTS5's BM25 divided by the sum of the query terms' IDFs (what a chunk holding every term once, at
  average length, scores), capped at 1;
- dense: the cosine similarity of normalised vectors, floored at 0;
- hybrid: the weighted mean of the two (`hybrid_search.embedding_weight` / `text_weight`, 0.5 each by default).
Dense search is exact (numpy brute force over the store's matrix, see BENCHMARKS.md for its cost).
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .store import fts_table

# Dropped from the lexical query only (BM25 gives them ~0 weight anyway, but each one makes FTS5 rank almost
# every chunk of the store); a query made only of them keeps them.
STOPWORDS = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from", "how", "i",
        "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "so", "that",
        "the", "their", "then", "there", "these", "they", "this", "to", "was", "we", "what", "when", "where",
        "which", "who", "why", "will", "with", "you", "your"
    ])
MAX_TERMS = 32
# BM25 weight of the `lead` column (file name + opening words, beside every chunk) against the chunk's own text:
# a passage of the document a question is about outranks a passing mention elsewhere.
LEAD_WEIGHT = 0.5  # on git-doc: recall@5 0.625 → 0.650 (0.25 the same, 1.0 lowers MRR)
CANDIDATES_MIN = 50  # each ranker proposes at least this many chunks before fusion


def query_terms(query: str) -> list[str]:
    tokens = list(dict.fromkeys(t for t in re.findall(r"\w+", query.lower())))
    kept = [t for t in tokens if t not in STOPWORDS] or tokens
    return kept[:MAX_TERMS]


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'  # every token quoted: punctuation never reaches FTS5's parser


@dataclass
class StoreIndex:
    """A store's dense side, loaded from its chunks: row ids (ascending), their files, unit vectors."""

    version: int
    ids: np.ndarray  # int64 chunk ids, ascending
    file_of: np.ndarray  # int32 index into `files`
    files: list[str]
    vectors: np.ndarray | None  # float32 (n, dims), L2-normalised; None without an embedding model
    file_index: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])


def load_index(conn: sqlite3.Connection, vector_store_id: str, version: int, dims: int | None) -> StoreIndex:
    rows = conn.execute("SELECT id, file_id, embedding FROM chunks WHERE vector_store_id = ? ORDER BY id",
                        (vector_store_id,)).fetchall()
    files = list(dict.fromkeys(row[1] for row in rows))
    file_index = {f: n for n, f in enumerate(files)}
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    file_of = np.fromiter((file_index[row[1]] for row in rows), dtype=np.int32, count=len(rows))
    vectors = None
    if dims:
        vectors = np.zeros((len(rows), dims), dtype=np.float32)
        for n, row in enumerate(rows):
            if row[2] is not None and len(row[2]) == dims * 4:  # a vector of another model counts as none
                vectors[n] = np.frombuffer(row[2], dtype=np.float32)
    return StoreIndex(version, ids, file_of, files, vectors, file_index)


def lexical(conn: sqlite3.Connection, store_seq: int, n_chunks: int, query: str,
            allowed: set[str] | None, limit: int) -> dict[int, float]:
    """chunk id → normalised BM25 score for the best `limit` chunks matching any query term."""
    terms = query_terms(query)
    if not terms or n_chunks == 0:
        return {}
    table = fts_table(store_seq)
    idfs = {t: _idf(n_chunks, _doc_count(conn, table, t)) for t in terms}
    idf_sum = sum(idfs.values())
    # A term in over half the chunks has FTS5's floor IDF (1e-6): it adds nothing to any score, but matching it
    # would make FTS5 rank most of the store. Only the informative terms are matched (the rarest if none is).
    useful = [t for t, idf in idfs.items() if idf > 1e-6] or [max(idfs, key=lambda t: idfs[t])]
    match = " OR ".join(_quote(t) for t in useful)
    rank = f"bm25({table}, 1.0, {LEAD_WEIGHT})"
    sql = f"SELECT f.rowid, {rank} FROM {table} AS f"
    args: list[object] = [match]
    if allowed is not None:
        sql += " JOIN chunks AS c ON c.id = f.rowid"
    sql += f" WHERE {table} MATCH ?"
    if allowed is not None:
        sql += f" AND c.file_id IN ({','.join('?' * len(allowed))})"
        args += sorted(allowed)
    sql += f" ORDER BY {rank} LIMIT ?"
    args.append(limit)
    return {int(rowid): min(1.0, -score / idf_sum) if idf_sum > 0 else 0.0
            for rowid, score in conn.execute(sql, args).fetchall()}


def _doc_count(conn: sqlite3.Connection, table: str, term: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {table} MATCH ?", (_quote(term),)).fetchone()[0])


def _idf(n: int, hits: int) -> float:
    """FTS5's own IDF (sqlite fts5_aux.c): log((N - n + 0.5) / (n + 0.5)), floored at 1e-6."""
    if hits == 0:
        return 0.0
    return max(1e-6, math.log((n - hits + 0.5) / (hits + 0.5)))


def dense(index: StoreIndex, query_vector: np.ndarray, allowed: set[str] | None, limit: int) -> dict[int, float]:
    """chunk id → cosine (floored at 0) for the `limit` nearest chunks."""
    sims = similarities(index, query_vector, allowed)
    if sims is None or sims.size == 0:
        return {}
    k = min(limit, sims.size)
    top = np.argpartition(-sims, k - 1)[:k]
    return {int(index.ids[i]): max(0.0, float(sims[i])) for i in top if sims[i] > -np.inf}


def similarities(index: StoreIndex, query_vector: np.ndarray, allowed: set[str] | None) -> np.ndarray | None:
    if index.vectors is None or index.size == 0:
        return None
    sims = index.vectors @ query_vector
    if allowed is not None:
        keep = np.array([index.file_index[f] for f in allowed if f in index.file_index], dtype=np.int32)
        sims = np.where(np.isin(index.file_of, keep), sims, -np.inf)
    return sims


def fuse(lex: dict[int, float], sem: dict[int, float], sims: np.ndarray | None, index: StoreIndex,
         text_weight: float, embedding_weight: float) -> dict[int, float]:
    """Weighted mean of both scores over the union of both candidate lists. A lexical candidate's cosine is
    read from `sims`; a dense-only candidate had no lexical match among the best, so its BM25 share counts 0."""
    if sims is None:
        return dict(lex)
    total = text_weight + embedding_weight
    fused: dict[int, float] = {}
    for chunk_id in set(lex) | set(sem):
        cosine = sem.get(chunk_id)
        if cosine is None:
            row = int(np.searchsorted(index.ids, chunk_id))
            cosine = max(0.0, float(sims[row])) if row < index.size and index.ids[row] == chunk_id else 0.0
        fused[chunk_id] = (text_weight * lex.get(chunk_id, 0.0) + embedding_weight * cosine) / total
    return fused


def best(scores: Iterable[tuple[int, float]], limit: int, threshold: float) -> list[tuple[int, float]]:
    kept = [(cid, s) for cid, s in scores if s >= threshold and s > 0]
    kept.sort(key=lambda pair: (-pair[1], pair[0]))
    return kept[:limit]


def candidates(limit: int) -> int:
    return max(CANDIDATES_MIN, limit * 4)
