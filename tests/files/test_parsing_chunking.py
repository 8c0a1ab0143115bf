"""Parsers (PDF, HTML, JSON, text) and the token chunker, directly."""

from __future__ import annotations

import pytest

from ddx_omni.files import filters as flt
from ddx_omni.files.chunking import ApproximateTokens, chunk_text
from ddx_omni.files.parsing import InvalidFile, UnsupportedFile, parser_for
from ddx_omni.files.retrieval import query_terms


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a real text layer (Helvetica), xref offsets computed."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_pdf_text_layer_is_read() -> None:
    data = minimal_pdf("Lighthouses guide ships at night")
    assert "Lighthouses guide ships at night" in parser_for("doc.pdf", data[:100])(data)


def test_broken_pdf_json_and_binary_text_are_invalid() -> None:
    with pytest.raises(InvalidFile):
        parser_for("x.pdf", b"%PDF")(b"%PDF-1.4 garbage")
    with pytest.raises(InvalidFile):
        parser_for("x.json", b"{")(b"{not json")
    with pytest.raises(InvalidFile):
        parser_for("x.txt", b"a\x00b")(b"a\x00b")


def test_types_by_extension_and_content() -> None:
    assert parser_for("main.rs", b"fn main() {}")(b"fn main() {}") == "fn main() {}"
    assert parser_for("Makefile", b"all:")(b"all:") == "all:"
    assert parser_for("NOTES", b"plain words")(b"plain words") == "plain words"
    assert '"a": 1' in parser_for("x.json", b"{")(b'{"a":1}')
    for name, head in (("x.exe", b"MZ"), ("photo.png", b"\x89PNG"), ("blob", b"\x00\x01")):
        with pytest.raises(UnsupportedFile):
            parser_for(name, head)


def test_html_keeps_paragraphs_and_drops_scripts() -> None:
    html = b"<html><head><style>p{}</style></head><body><nav>menu</nav><h2>Title</h2><p>One <b>two</b>.</p>" \
           b"<script>alert(1)</script><ul><li>a</li><li>b</li></ul></body></html>"
    assert parser_for("p.html", html)(html) == "Title\n\nOne two.\n\na\n\nb"


def test_chunks_respect_the_limit_overlap_and_paragraphs() -> None:
    paragraphs = [" ".join(f"p{p}w{w}" for w in range(30)) + "." for p in range(20)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, ApproximateTokens(), max_tokens=100, overlap=20)
    assert all(c.tokens <= 100 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)  # every cut at a paragraph end, none mid-word
    joined = " ".join(c.text for c in chunks)
    assert all(p in joined for p in paragraphs)  # nothing lost
    for first, second in zip(chunks, chunks[1:], strict=False):
        assert second.text.split()[0] in first.text  # the next chunk starts inside the previous one (overlap)


def test_a_paragraph_longer_than_the_window_is_split_at_sentences() -> None:
    text = " ".join(f"Sentence number {n} is here." for n in range(200))
    chunks = chunk_text(text, ApproximateTokens(), max_tokens=100, overlap=0)
    assert len(chunks) > 5 and all(c.tokens <= 100 for c in chunks)
    assert all(c.text.startswith("Sentence") and c.text.endswith(".") for c in chunks)


def test_query_terms_quote_safe_and_drop_stopwords() -> None:
    assert query_terms('What is "the" best way: a.b OR c?') == ["best", "way", "b", "c"]
    assert query_terms("the a") == ["the", "a"]  # only stop words: keep them


def test_filter_semantics() -> None:
    attrs = {"n": 3, "s": "x", "b": True}
    assert flt.matches({"type": "eq", "key": "b", "value": True}, attrs)
    assert not flt.matches({"type": "eq", "key": "n", "value": True}, {"n": 1})  # True is not 1
    assert not flt.matches({"type": "gt", "key": "s", "value": 1}, attrs)
    assert not flt.matches({"type": "eq", "key": "missing", "value": 1}, attrs)
    with pytest.raises(Exception, match="list"):
        flt.validate({"type": "in", "key": "n", "value": 3})
