"""The in-process BM25 index (files/lexical.py): its scores are SQLite FTS5's bm25() on the same chunks, and
its threshold-algorithm top-k returns exactly what scoring every matching chunk would."""

from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest

from ddx_omni.files import lexical as lx
from ddx_omni.files.index import FileSegment, assemble

WORDS = ["cat", "dog", "fish", "bird", "whale", "shark", "gill", "fin", "purr", "bark", "wolf", "kitten", "puppy",
         "ocean", "river", "tree", "leaf", "root", "stone", "searching", "searches", "searched", "café", "naïve",
         "résumé", "rebase", "merge", "commit", "branch", "tag"]


def corpus(seed: int, files: int, chunks_per_file: int) -> list[tuple[str, list[str]]]:
    """(lead, chunk texts) per file: Zipf-ish word draws, so some terms are rare and some common."""
    rng = random.Random(seed)
    weights = [1 / (n + 1) for n in range(len(WORDS))]
    def text(n: int) -> str:
        return " ".join(rng.choices(WORDS, weights, k=n))
    return [(f"file{f}.md {text(6)}", [text(rng.randint(3, 40)) for _ in range(chunks_per_file)])
            for f in range(files)]


def index_of(docs: list[tuple[str, list[str]]], shuffle_ids: bool = False) -> tuple:
    tokenize, vocab = lx.Tokenizer(), lx.Vocabulary()
    ids = list(range(1, 1 + sum(len(c) for _, c in docs)))
    if shuffle_ids:  # files written at once on PostgreSQL may interleave their chunk ids
        random.Random(1).shuffle(ids)
    segments, at = [], 0
    for n, (lead, texts) in enumerate(docs):
        chunk_ids = np.array(ids[at:at + len(texts)], dtype=np.int64)
        at += len(texts)
        segments.append(FileSegment(f"f{n}", chunk_ids, lx.file_postings(texts, lead, tokenize, vocab), None))
    return assemble(1, segments, vocab, None), tokenize


def test_scores_are_fts5_bm25_on_the_same_chunks() -> None:
    docs = corpus(0, files=6, chunks_per_file=8)
    index, tokenize = index_of(docs)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE f USING fts5(text, lead, tokenize='porter unicode61')")
    rowid = 0
    for lead, texts in docs:
        for text in texts:
            rowid += 1
            db.execute("INSERT INTO f (rowid, text, lead) VALUES (?, ?, ?)", (rowid, text, lead))
    for query in ("cat", "searching café", "whale gill root", "naive resume", "file3"):
        terms = list(dict.fromkeys(index.vocab.find(tokenize(query))))
        rows, scores = lx.top_k(index.postings, terms, index.size, None)
        ours = {int(index.ids[r]): float(s) for r, s in zip(rows, scores, strict=True)}
        match = " OR ".join(f'"{t}"' for t in query.split())
        theirs = dict(db.execute(f"SELECT rowid, -bm25(f, 1.0, {lx.LEAD_WEIGHT}) FROM f WHERE f MATCH ?",
                                 (match,)).fetchall())
        assert theirs and set(ours) == set(theirs), query
        for chunk_id, score in theirs.items():
            assert ours[chunk_id] == pytest.approx(score, rel=1e-5, abs=1e-6), (query, chunk_id)


def exhaustive(index, terms: list[int], allowed: np.ndarray | None) -> dict[int, float]:
    p = index.postings
    scores = np.zeros(index.size)
    for t in terms:
        s, e = p.start[t], p.start[t + 1]
        np.add.at(scores, p.by_row_rows[s:e], p.by_row[s:e])
    held = {int(r): float(scores[r]) for t in terms for r in p.by_row_rows[p.start[t]:p.start[t + 1]]}
    return {r: v for r, v in held.items() if allowed is None or allowed[r]}


@pytest.mark.parametrize("shuffle_ids", [False, True])
@pytest.mark.parametrize("first_depth", [256, 8])  # 8: one short threshold round, then MaxScore nearly always
def test_threshold_top_k_equals_scoring_every_match(shuffle_ids: bool, first_depth: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lx, "FIRST_DEPTH", first_depth)
    monkeypatch.setattr(lx, "TA_ROUNDS", 2 if first_depth > 8 else 1)
    index, tokenize = index_of(corpus(1, files=40, chunks_per_file=60), shuffle_ids)  # 2,400 chunks
    rng = random.Random(2)
    assert np.all(np.diff(index.ids) > 0)
    for trial in range(60):
        terms = index.vocab.find(tokenize(" ".join(rng.sample(WORDS, rng.randint(1, 5)))))
        k = rng.choice([1, 5, 50, 200])
        allowed = (index.rows_of({f"f{n}" for n in range(0, 40, 7)}) if trial % 3 == 0 else None)
        rows, scores = lx.top_k(index.postings, terms, k, allowed)
        everything = exhaustive(index, terms, allowed)
        best = sorted(everything.values(), reverse=True)[:k]
        assert len(rows) == len(best) and np.allclose(scores, best, rtol=1e-6), (trial, terms, k)
        assert all(everything[int(r)] == pytest.approx(float(s), rel=1e-6) for r, s in zip(rows, scores, strict=True))
