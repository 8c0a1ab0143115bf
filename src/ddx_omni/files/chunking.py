"""Text → overlapping chunks of at most N tokens whose boundaries fall on paragraphs, lines or sentences.

Tokens are the embedding model's (its tokenizer's offsets) when one is loaded; without one a documented
approximation counts one token per word or punctuation mark (`\\w+|[^\\w\\s]`), which is within ~25 % of a
BPE tokenizer on English prose. A chunk ends at the strongest break (paragraph > line > sentence end) found in
the second half of its window, and the next one starts `overlap` tokens earlier, moved forward to the first
sentence start there, so overlapping text begins at a sentence rather than mid-word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Span = tuple[int, int]

AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS = 800, 400  # OpenAI's `auto` strategy
_APPROX = re.compile(r"\w+|[^\w\s]")


class TokenCounter(Protocol):
    def spans(self, text: str) -> list[Span]:
        """Character spans of the text's tokens, in order."""
        ...


class ApproximateTokens:
    """One token per word or punctuation mark (no embedding model loaded)."""

    name = "approximate (one token per word or punctuation mark)"

    def spans(self, text: str) -> list[Span]:
        return [m.span() for m in _APPROX.finditer(text)]


@dataclass(frozen=True)
class Chunk:
    text: str
    tokens: int


def break_scores(text: str, spans: Sequence[Span]) -> list[int]:
    """scores[i]: how good a boundary lies before token i (3 paragraph, 2 line, 1 sentence end, 0 none)."""
    scores = [3] * len(spans)
    for i in range(1, len(spans)):
        gap = text[spans[i - 1][1]:spans[i][0]]
        if gap.count("\n") >= 2:  # a blank line, possibly with spaces on it
            scores[i] = 3
        elif "\n" in gap:
            scores[i] = 2
        elif text[spans[i - 1][1] - 1:spans[i - 1][1]] in (".", "!", "?", ":", ";") and gap:
            scores[i] = 1
        else:
            scores[i] = 0
    return scores


def _cut(scores: Sequence[int], start: int, limit: int, n: int) -> int:
    """Where the chunk starting at `start` ends: the latest strongest break in the second half of its window."""
    stop = start + limit
    if stop >= n:
        return n
    best_at, best_score = stop, 0
    for i in range(stop, start + max(1, limit // 2) - 1, -1):
        if scores[i] > best_score:
            best_at, best_score = i, scores[i]
            if best_score == 3:
                break
    return best_at


def _next_start(scores: Sequence[int], start: int, end: int, overlap: int) -> int:
    if overlap <= 0:
        return end
    begin = max(start + 1, end - overlap)
    return next((i for i in range(begin, end) if scores[i] >= 1), begin)


def chunk_text(text: str, counter: TokenCounter, max_tokens: int = AUTO_MAX_TOKENS,
               overlap: int = AUTO_OVERLAP_TOKENS) -> list[Chunk]:
    spans = counter.spans(text)
    if not spans:
        return []
    scores = break_scores(text, spans)
    chunks: list[Chunk] = []
    start, n = 0, len(spans)
    while start < n:
        end = _cut(scores, start, max_tokens, n)
        chunks.append(Chunk(text[spans[start][0]:spans[end - 1][1]], end - start))
        if end >= n:
            break
        start = _next_start(scores, start, end, overlap)
    return chunks
