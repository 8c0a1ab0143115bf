"""Readable text of a fetched page (trafilatura for HTML), a page's title, and finding text inside a page.

These are CPU work on parsed HTML: callers run them off the event loop (asyncio.to_thread).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import trafilatura

from ..core.fetch import FetchError, FetchResult

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain", "text/markdown")
ACCEPT = "text/html,application/xhtml+xml;q=0.9,text/plain;q=0.8,*/*;q=0.1"


@dataclass(frozen=True)
class Page:
    url: str  # where it was fetched from, after redirects
    title: str
    text: str
    truncated: bool = False  # the body went past [web_search].max_page_bytes


def _decoded(result: FetchResult) -> str:
    encoding = result.encoding or "utf-8"
    try:
        return result.content.decode(encoding, errors="replace")
    except LookupError:  # a charset Python does not know
        return result.content.decode("utf-8", errors="replace")


def extract_page(result: FetchResult) -> Page:
    """Page text of an HTML or plain-text response; FetchError('unsupported') for anything else."""
    if result.content_type in TEXT_TYPES:
        return Page(result.url, result.url, _decoded(result).strip(), result.truncated)
    if result.content_type not in HTML_TYPES and result.content_type:
        raise FetchError("unsupported", f"{result.url} is {result.content_type}, not a page this tool reads")
    # Bytes with no charset header go to trafilatura as bytes: it detects the encoding from the markup.
    markup: str | bytes = _decoded(result) if result.encoding else result.content
    doc = trafilatura.bare_extraction(markup, url=result.url, with_metadata=True, include_comments=False,
                                      include_tables=True, favor_recall=True)
    text = getattr(doc, "text", None) or ""
    title = getattr(doc, "title", None) or ""
    if not text.strip():  # very short or unusual pages: trafilatura's baseline takes all visible text
        text = trafilatura.baseline(markup)[1]
    return Page(result.url, " ".join(title.split()) or result.url, text.strip(), result.truncated)


def cut(text: str, chars: int) -> str:
    """At most `chars` characters, cut at a word boundary, with an ellipsis when anything was left out."""
    if len(text) <= chars:
        return text
    head = text[:chars]
    space = head.rfind(" ")
    return (head[:space] if space > chars // 2 else head).rstrip() + " …"  # mid-word only for a huge word


def find_in_text(text: str, pattern: str, context: int = 160, limit: int = 8) -> tuple[int, list[str]]:
    """Case-insensitive literal matches of `pattern` (whitespace-insensitive): (count, excerpts around the first)."""
    words = pattern.split()
    if not words:
        return 0, []
    regex = re.compile(r"\s+".join(re.escape(w) for w in words), re.IGNORECASE)
    matches = list(regex.finditer(text))
    excerpts = []
    for match in matches[:limit]:
        start, end = max(0, match.start() - context), min(len(text), match.end() + context)
        excerpt = " ".join(text[start:end].split())
        excerpts.append(("…" if start else "") + excerpt + ("…" if end < len(text) else ""))
    return len(matches), excerpts
