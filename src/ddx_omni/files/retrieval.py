"""Hybrid retrieval over one vector store's in-process index: BM25 top-k, cosine over its vectors, fused in [0, 1].

Scores mean the same thing whatever the store's size, so `score_threshold` is usable:
- lexical: BM25 (lexical.py, FTS5's formula) divided by the sum of the query terms' IDFs (what a chunk holding
  every term once, at average length, scores), capped at 1;
- dense: the cosine similarity of normalised vectors, floored at 0;
- hybrid: the weighted mean of the two (`hybrid_search.embedding_weight` / `text_weight`, 0.5 each by default).
Dense search is exact (numpy brute force over the store's matrix, see BENCHMARKS.md for its cost).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from . import lexical as lx
from .index import StoreIndex

# Dropped from the lexical query only (BM25 gives them ~0 weight anyway, and each one's postings are long);
# a query made only of them keeps them.
STOPWORDS = frozenset(
    [
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from", "how", "i",
        "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "so", "that",
        "the", "their", "then", "there", "these", "they", "this", "to", "was", "we", "what", "when", "where",
        "which", "who", "why", "will", "with", "you", "your"
    ])
MAX_TERMS = 32
CANDIDATES_MIN = 50  # each ranker proposes at least this many chunks before fusion


def query_terms(query: str) -> list[str]:
    tokens = list(dict.fromkeys(t for t in re.findall(r"\w+", query.lower())))
    kept = [t for t in tokens if t not in STOPWORDS] or tokens
    return kept[:MAX_TERMS]


def lexical(index: StoreIndex, tokenize: lx.Tokenizer, query: str, allowed: set[str] | None,
            limit: int) -> dict[int, float]:
    """chunk id → normalised BM25 score for the best `limit` chunks matching any query term."""
    terms, idf_sum = lx.query_ids(index.postings, index.vocab, tokenize(" ".join(query_terms(query))))
    if not terms or index.size == 0:
        return {}
    rows, scores = lx.top_k(index.postings, terms, limit, index.rows_of(allowed))
    return {int(index.ids[r]): lx.normalised(float(s), idf_sum) for r, s in zip(rows, scores, strict=True)}


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
    mask = index.rows_of(allowed)
    return sims if mask is None else np.where(mask, sims, -np.inf)


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
