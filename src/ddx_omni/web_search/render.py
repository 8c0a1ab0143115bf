"""What the model reads back from web_search, open_page and find_in_page, cut to the request's budget."""

from __future__ import annotations

from .citations import SourceBook
from .extract import Page, cut
from .service import Matches, PageFailure, SearchOutcome

CITE_HINT = ("Cite a source as [n] right after the sentence it supports (or as a markdown link to its URL); "
             "open_page reads a result in full, find_in_page looks for words inside one.")


def render_search(outcome: SearchOutcome, book: SourceBook, budget: int) -> str:
    """The numbered results, then the readable text of the top pages sharing what the listing left of `budget`."""
    if not outcome.hits:
        return f'No results for "{outcome.query}". Try other words.'
    lines = [f'Search results for "{outcome.query}". {CITE_HINT}']
    for hit in outcome.hits:
        source = book.add(hit.url, hit.title)
        lines.append(f"[{source.number}] {source.title} — {hit.url}\n    {hit.snippet}".rstrip())
    listing = "\n".join(lines)
    read = [p for p in outcome.pages if isinstance(p, Page) and p.text]
    share = max(0, budget - len(listing)) // max(1, len(read))
    parts = [listing]
    for hit, page in zip(outcome.hits, outcome.pages, strict=False):
        if isinstance(page, PageFailure):
            parts.append(f"(The page {page.url} could not be read: {page.message}.)")
        elif page.text and share > 0:
            source = book.add(hit.url, page.title, better_title=True)
            book.alias(page.url, source)
            parts.append(f"Text of [{source.number}] {source.title} ({page.url}):\n{cut(page.text, share)}")
    return "\n\n".join(parts)


def render_page(page: Page, requested_url: str, book: SourceBook, budget: int) -> str:
    source = book.add(requested_url, page.title, better_title=True)
    book.alias(page.url, source)
    note = " (the page was longer than the fetch limit; this is its beginning)" if page.truncated else ""
    body = cut(page.text, budget) if page.text else "(the page has no readable text)"
    return f"[{source.number}] {source.title} ({page.url}){note}:\n{body}"


def render_matches(matches: Matches, requested_url: str, pattern: str, book: SourceBook, budget: int) -> str:
    source = book.add(requested_url, matches.page.title, better_title=True)
    book.alias(matches.page.url, source)
    head = f'[{source.number}] {source.title} ({matches.page.url}):'
    if not matches.count:
        return f'{head} "{pattern}" was not found on the page.'
    shown = len(matches.excerpts)
    more = f" (the first {shown} shown)" if shown < matches.count else ""
    return cut(f'{head} "{pattern}" found {matches.count} times{more}:\n'
               + "\n".join(f"- {e}" for e in matches.excerpts), budget)
