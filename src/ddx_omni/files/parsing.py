"""File bytes → plain text for chunking, by file type: text, Markdown, HTML, PDF, JSON and source code.

Parsers: HTML with selectolax (the Lexbor engine; scripts, styles and navigation dropped, block elements kept
as paragraphs), PDF with pypdf (text layer only: a scanned PDF without one fails with `invalid_file`), JSON with
the standard library (pretty-printed, so each key sits on its own line), everything else decoded as UTF-8
(with a Latin-1 fallback). Which parser runs is decided by the file name's extension; a file without a known
extension is accepted when its bytes are text.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import PurePath

TEXT_EXTENSIONS = frozenset(
    [
        ".txt", ".text", ".md", ".markdown", ".mdx", ".rst", ".adoc", ".org", ".tex", ".csv", ".tsv", ".log",
        ".ini", ".cfg", ".conf", ".toml", ".yaml", ".yml", ".xml", ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts",
        ".tsx", ".jsx", ".java", ".kt", ".kts", ".scala", ".go", ".rs", ".rb", ".php", ".pl", ".pm", ".lua", ".r",
        ".jl", ".swift", ".m", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cs", ".fs", ".sh", ".bash",
        ".zsh", ".ps1", ".sql", ".css", ".scss", ".less", ".vue", ".svelte", ".dart", ".ex", ".exs", ".erl", ".hs",
        ".ml", ".clj", ".el", ".vim", ".gradle", ".cmake", ".mk", ".dockerfile", ".proto", ".graphql", ".ipynb",
        ".diff", ".patch", ".man", ".1", ".3", ".5", ".8", ".texi", ".info", ".properties", ".env", ".lock"
    ])
HTML_EXTENSIONS = frozenset((".html", ".htm", ".xhtml"))


class UnsupportedFile(Exception):
    """The file's type is not one file search can read (vector store file → 400 / last_error unsupported_file)."""


class InvalidFile(Exception):
    """The file claims a supported type but its content cannot be read (last_error invalid_file)."""


def parser_for(filename: str, head: bytes) -> Callable[[bytes], str]:
    """The parser for this file, or UnsupportedFile. `head`: the first bytes, to tell text from binary."""
    ext = PurePath(filename.lower()).suffix
    name = PurePath(filename.lower()).name
    if ext == ".pdf":
        return parse_pdf
    if ext in HTML_EXTENSIONS:
        return parse_html
    if ext == ".json" or ext == ".jsonl":
        return parse_json if ext == ".json" else parse_text
    if ext in TEXT_EXTENSIONS or name in ("makefile", "dockerfile", "readme", "license", "changelog"):
        return parse_text
    if ext == "" and _looks_textual(head):
        return parse_text
    raise UnsupportedFile(f"Files with the extension {ext or '(none)'!r} are not supported for file search; "
                          f"supported: text, Markdown, HTML, PDF, JSON and source code")


def _looks_textual(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut at the end of the sample
    return True


def decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise InvalidFile("the file is binary, not text")
    return decode(data).replace("\r\n", "\n")


def parse_json(data: bytes) -> str:
    try:
        value = json.loads(decode(data))
    except json.JSONDecodeError as exc:
        raise InvalidFile(f"not valid JSON: {exc}") from None
    return json.dumps(value, indent=2, ensure_ascii=False)


BLOCK_TAGS = ("p", "div", "section", "article", "li", "tr", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5",
              "h6", "dt", "dd", "table", "br", "hr", "figcaption")
DROP_TAGS = ("script", "style", "noscript", "template", "svg", "nav", "head")


def parse_html(data: bytes) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(decode(data))
    for tag in DROP_TAGS:
        for node in tree.css(tag):
            node.decompose()
    root = tree.body or tree.root
    if root is None:
        return ""
    for tag in BLOCK_TAGS:  # a paragraph break around every block element, so chunking can respect them
        for node in root.css(tag):
            node.insert_before("\n\n")
            node.insert_after("\n\n")
    text = root.text(separator="", strip=False)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    return re.sub(r"\n\s*\n\s*", "\n\n", text).strip()


def parse_pdf(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise InvalidFile(f"the PDF cannot be read: {exc}") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise InvalidFile("the PDF has no text layer (a scan needs OCR first)")
    return text
