"""BM25 for one vector store, in process: FTS5's tokens and formula, impact-ordered postings, exact top-k by
Fagin's threshold algorithm, so a search reads a few postings per query term instead of every match.

Tokens are what SQLite's `porter unicode61` tokenizer makes (letters and digits, case and diacritics folded,
Porter-stemmed), and a chunk's score is FTS5's bm25 (k1 = 1.2, b = 0.75, IDF log((N - n + 0.5) / (n + 0.5))
floored at 1e-6) over the chunk's text plus its file's `lead` (file name + opening words) at weight LEAD_WEIGHT,
the document length counting both. Each posting stores its term's whole BM25 contribution (its *impact*); each
term's postings are kept twice: by impact (descending) for the threshold algorithm and by row for lookups.

Top-k (`top_k`): read the `budget` highest-impact postings of all the query's terms together (each term's list
down to one common impact cut, so a rare term's list is read deep and a common term's hardly at all); score
each chunk seen exactly (a lookup in every term's row-ordered list); a chunk not seen scores at most the sum of
each list's next impact (the threshold). Once the k-th best score reaches the threshold the answer is exact;
else the budget grows ×4. The postings read depend on how the scores are spread, not on the store's size.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import Stemmer

K1, B = 1.2, 0.75
IDF_FLOOR = 1e-6  # FTS5's: a term in over half the chunks still counts, barely
# BM25 weight of the `lead` column (file name + opening words, beside every chunk) against the chunk's own text:
# a passage of the document a question is about outranks a passing mention elsewhere.
LEAD_WEIGHT = 0.5  # on git-doc: recall@5 0.625 → 0.650 (0.25 the same, 1.0 lowers MRR)
FIRST_DEPTH = 256  # postings read (all query terms together) in the first round of the threshold algorithm
TA_ROUNDS = 2  # then MaxScore (its θ: the k-th best score found so far) — see top_k
_TOKEN = re.compile(r"[^\W_]+")  # unicode61: letters, digits (and private-use marks); `_` separates
_MARKS = re.compile("[\u0300-\u036f]")  # the combining diacritics NFKD splits off Latin letters (é → e + ´)


class Tokenizer:
    """text → stemmed tokens, as FTS5's `porter unicode61` makes them (PyStemmer's Porter: the same algorithm)."""

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("porter")

    def __call__(self, text: str) -> list[str]:
        text = text.lower()
        if not text.isascii():
            text = _MARKS.sub("", unicodedata.normalize("NFKD", text))
        return self._stemmer.stemWords(_TOKEN.findall(text))


class Vocabulary:
    """A store's term → id map; it only grows, so a file's postings built earlier stay valid."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def add(self, tokens: Sequence[str]) -> np.ndarray:
        ids = self.ids
        for token in set(tokens).difference(ids):
            ids[token] = len(ids)
        return np.fromiter(map(ids.__getitem__, tokens), dtype=np.int64, count=len(tokens))

    def find(self, tokens: Sequence[str]) -> list[int]:
        return [self.ids[t] for t in dict.fromkeys(tokens) if t in self.ids]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class FilePostings:
    """One file's chunks, tokenised once: (term, row, weighted frequency) triples and each chunk's length."""

    terms: np.ndarray  # int32 term ids
    rows: np.ndarray  # int32 chunk index within the file
    freqs: np.ndarray  # float32 text frequency + LEAD_WEIGHT × lead frequency
    lengths: np.ndarray  # int64 tokens per chunk, text and lead


def file_postings(texts: Sequence[str], lead: str, tokenize: Tokenizer, vocab: Vocabulary) -> FilePostings:
    lead_ids = vocab.add(tokenize(lead))
    chunk_ids = [vocab.add(tokenize(t)) for t in texts]
    sizes = np.array([len(c) for c in chunk_ids], dtype=np.int64)
    n = len(texts)
    text_rows = np.repeat(np.arange(n, dtype=np.int64), sizes)
    lead_rows = np.repeat(np.arange(n, dtype=np.int64), lead_ids.size)
    terms = np.concatenate([*chunk_ids, np.tile(lead_ids, n)]) if n else np.zeros(0, np.int64)
    rows = np.concatenate([text_rows, lead_rows])
    weights = np.concatenate([np.ones(text_rows.size), np.full(lead_rows.size, LEAD_WEIGHT)])
    keys, inverse = np.unique((rows << 32) | terms, return_inverse=True)
    # kept between refreshes for every file of the store: the smallest types that hold them
    return FilePostings((keys & 0xFFFFFFFF).astype(np.int32), (keys >> 32).astype(np.int32),
                        np.bincount(inverse, weights=weights).astype(np.float32), sizes + lead_ids.size)


@dataclass
class Postings:
    """A store's postings by term (CSR: term t owns [start[t], start[t + 1])), in two orders."""

    start: np.ndarray  # int64 (terms + 1)
    idf: np.ndarray  # float64 per term (0 for a term no chunk holds any more)
    by_impact_rows: np.ndarray  # int32, each term's postings by impact, highest first
    by_impact: np.ndarray  # float32
    by_row_rows: np.ndarray  # int32, each term's postings by row, ascending
    by_row: np.ndarray  # float32


def idf(n: int, df: np.ndarray) -> np.ndarray:
    """FTS5's own IDF (sqlite fts5_aux.c): log((N - n + 0.5) / (n + 0.5)), floored at 1e-6; 0 where n = 0."""
    with np.errstate(divide="ignore"):
        raw = np.log((n - df + 0.5) / (df + 0.5))
    return np.where(df > 0, np.maximum(IDF_FLOOR, raw), 0.0)


def build(terms: np.ndarray, rows: np.ndarray, freqs: np.ndarray, lengths: np.ndarray, n_terms: int) -> Postings:
    """The store's postings from all its files' triples (`rows` already global)."""
    n = int(lengths.size)
    df = np.bincount(terms, minlength=n_terms)
    term_idf = idf(n, df)
    avgdl = float(lengths.mean()) if n else 1.0
    norm = K1 * (1 - B + B * lengths[rows] / avgdl)
    impact = (term_idf[terms] * freqs * (K1 + 1) / (freqs + norm)).astype(np.float32)
    start = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
    # one int64 sort key each (a few times faster than lexsort): term in the high 32 bits, then the row, or the
    # impact's bits inverted (a non-negative float32's bits order as the float does: highest impact first)
    by_row = np.argsort((terms << 32) | rows)
    by_impact = np.argsort((terms << 32) | (0xFFFFFFFF - impact.view(np.uint32).astype(np.int64)))
    return Postings(start, term_idf, rows[by_impact].astype(np.int32), impact[by_impact],
                    rows[by_row].astype(np.int32), impact[by_row])


def query_ids(postings: Postings, vocab: Vocabulary, tokens: Sequence[str]) -> tuple[list[int], float]:
    """The query's terms worth matching, and the sum of all its terms' IDFs (the score that counts as 1).
    A term at the IDF floor adds next to nothing to any score: it is matched only if no other term is."""
    ids = [t for t in vocab.find(tokens) if t < postings.idf.size]
    idfs = {t: float(postings.idf[t]) for t in ids}
    idf_sum = sum(idfs.values())
    useful = [t for t, v in idfs.items() if v > IDF_FLOOR]
    if not useful and idfs and idf_sum > 0:
        useful = [max(idfs, key=lambda t: idfs[t])]
    return useful, idf_sum


def top_k(postings: Postings, terms: list[int], k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, raw BM25 scores) of the best k chunks holding any of `terms`, exact; `allowed`: a boolean row mask.
    Threshold rounds first; if they have not settled it after TA_ROUNDS, MaxScore finishes from their k-th score."""
    lists = [(int(postings.start[t]), int(postings.start[t + 1])) for t in terms]
    lists = [(s, e) for s, e in lists if e > s]
    budget = max(FIRST_DEPTH, k)
    seen, scores = np.zeros(0, np.int32), np.zeros(0, np.float64)
    for _ in range(TA_ROUNDS):
        depths = _depths(postings, lists, budget)
        fresh = np.unique(np.concatenate([postings.by_impact_rows[s:s + d] for (s, _), d in zip(lists, depths,
                                                                                               strict=True)]))
        fresh = fresh[~np.isin(fresh, seen, assume_unique=True)]
        if allowed is not None:
            fresh = fresh[allowed[fresh]]
        seen, scores = np.concatenate([seen, fresh]), np.concatenate([scores, _exact(postings, lists, fresh)])
        threshold = sum(float(postings.by_impact[s + d]) for (s, e), d in zip(lists, depths, strict=True)
                        if s + d < e)
        if threshold == 0 or (seen.size >= k and _kth(scores, k) >= threshold):
            return _best(seen, scores, k)
        budget *= 4
    theta = _kth(scores, k) if seen.size >= k else 0.0
    return _best(*_max_score(postings, lists, theta, allowed), k)


def _max_score(postings: Postings, lists: list[tuple[int, int]], theta: float, allowed: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Every chunk that can score θ or more, scored. A chunk holding only terms whose maximum impacts sum below
    θ cannot: those lists (the common terms') are never scanned, only looked up for the chunks found in the
    others; a chunk whose partial score plus those maxima stays below θ is not looked up at all."""
    by_max = sorted(lists, key=lambda se: float(postings.by_impact[se[0]]))
    maxima = np.cumsum([float(postings.by_impact[s]) for s, _ in by_max])
    cut = int(np.searchsorted(maxima, theta, side="left"))  # lists [0, cut) are non-essential
    rest, essential = by_max[:cut], by_max[cut:]
    rows = np.concatenate([postings.by_row_rows[s:e] for s, e in essential])
    found, inverse = np.unique(rows, return_inverse=True)
    partial = np.bincount(inverse, weights=np.concatenate([postings.by_row[s:e] for s, e in essential]))
    keep = partial + (float(maxima[cut - 1]) if cut else 0.0) >= theta
    if allowed is not None:
        keep &= allowed[found]
    found, partial = found[keep], partial[keep]
    return found, partial + _exact(postings, rest, found)


def _best(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    best = np.argsort(-scores, kind="stable")[:k]
    return rows[best], scores[best]


def _depths(postings: Postings, lists: list[tuple[int, int]], budget: int) -> list[int]:
    """How far to read each list: every posting whose impact is among the `budget` highest of all the query's
    lists (so a rare term's list is read deep and a common one's hardly at all: its impacts are small)."""
    heads = [postings.by_impact[s:min(e, s + budget)] for s, e in lists]
    pooled = np.concatenate(heads)
    if pooled.size <= budget:
        return [h.size for h in heads]
    cut = np.partition(pooled, pooled.size - budget)[pooled.size - budget]
    return [int(np.searchsorted(-h, -cut, side="right")) for h in heads]


def _exact(postings: Postings, lists: list[tuple[int, int]], rows: np.ndarray) -> np.ndarray:
    scores = np.zeros(rows.size, dtype=np.float64)
    for s, e in lists:
        term_rows = postings.by_row_rows[s:e]
        at = np.minimum(np.searchsorted(term_rows, rows), e - s - 1)
        hit = term_rows[at] == rows
        scores += np.where(hit, postings.by_row[s:e][at], 0.0)
    return scores


def _kth(scores: np.ndarray, k: int) -> float:
    return float(np.partition(scores, scores.size - k)[scores.size - k])


def normalised(score: float, idf_sum: float) -> float:
    """A raw BM25 score over the query's IDF sum (what a chunk holding every term once at average length
    scores, about), capped at 1: the same scale whatever the store's size."""
    return min(1.0, score / idf_sum) if idf_sum > 0 and math.isfinite(score) else 0.0
