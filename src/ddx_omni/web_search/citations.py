"""How an answer's text is mapped to the pages it cites: `url_citation` annotations.

Every page one response's web_search calls show the model (a listed result, an opened page) gets a number,
[1], [2]…, in first-seen order; the tool output tells the model to cite a source as `[n]` right after what
it supports, or as a markdown link to the source's URL. In the final answer's text three forms are cited:
- `[n]` (also `[n, m]`): one url_citation per known number, spanning the whole marker;
- `[label](url)` with the URL of a known source: spanning the whole link (OpenAI's own answers cite so);
- a bare URL of a known source: spanning the URL.
So, as in OpenAI's annotations, start_index/end_index cover the citation itself (text[start:end] is the
marker or link), counted in Python characters (code points) of the output_text. Numbers and URLs the tool
never showed the model are left alone: no citation points at a page nobody read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_LINK = re.compile(r"\[([^\]\n]*)\]\(<?(https?://[^\s)>]+)>?\)")
_BARE = re.compile(r"https?://[^\s<>()\[\]\"'`]+")
_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\](?!\()")
_TRAILING = ".,;:!?"


@dataclass
class Source:
    number: int
    url: str
    title: str


def url_key(url: str) -> str:
    """Two spellings of one page compare equal: no fragment, no trailing slash, case-blind scheme and host."""
    url = url.split("#", 1)[0].rstrip("/")
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}{sep}{host.lower()}{slash}{path}"


class SourceBook:
    """The sources one response has shown the model, numbered; turns an answer's citations into annotations."""

    def __init__(self) -> None:
        self._by_url: dict[str, Source] = {}
        self._by_number: dict[int, Source] = {}

    def add(self, url: str, title: str, *, better_title: bool = False) -> Source:
        """The source for `url` (numbered on first sight); `better_title`: the page's own title replaces the
        provider's."""
        key = url_key(url)
        source = self._by_url.get(key)
        if source is None:
            source = Source(len(self._by_number) + 1, url, title or url)
            self._by_url[key] = source
            self._by_number[source.number] = source
        elif better_title and title:
            source.title = title
        return source

    def alias(self, url: str, source: Source) -> None:
        """Another URL of the same page (where a redirect ended)."""
        self._by_url.setdefault(url_key(url), source)

    def annotate(self, text: str) -> list[dict[str, Any]]:
        annotations: list[tuple[int, int, Source]] = []
        taken: list[tuple[int, int]] = []
        for match in _LINK.finditer(text):
            source = self._by_url.get(url_key(match.group(2)))
            taken.append(match.span())
            if source is not None:
                annotations.append((match.start(), match.end(), source))
        for match in _BARE.finditer(text):
            start, end = match.start(), match.end() - (len(match.group()) - len(match.group().rstrip(_TRAILING)))
            source = self._by_url.get(url_key(text[start:end]))
            if source is not None and not _inside(start, taken):
                annotations.append((start, end, source))
        for match in _MARKER.finditer(text):
            if _inside(match.start(), taken):
                continue
            for number in dict.fromkeys(int(n) for n in re.findall(r"\d+", match.group(1))):
                if number in self._by_number:
                    annotations.append((match.start(), match.end(), self._by_number[number]))
        annotations.sort(key=lambda a: (a[0], a[2].number))
        return [{"type": "url_citation", "url": s.url, "title": s.title, "start_index": start, "end_index": end}
                for start, end, s in annotations]


def _inside(index: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= index < end for start, end in spans)
