"""A local HTTP server that stands in for the internet in these tests (there is none here).

It is a real server on a real socket: a SearXNG-compatible JSON search API (`GET /search?q=…&format=json`),
Brave's (`GET /res/v1/web/search`) and Tavily's (`POST /search`) search APIs, a handful of real-looking HTML
pages (navigation, cookie banners, footers, scripts around the article), a page that never answers, redirects
and other awkward answers. Result URLs use two host names for the same server, `localhost` and `127.0.0.1`,
so that allowed_domains has two domains to tell apart.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGES = Path(__file__).parent / "pages"
BRAVE_KEY, TAVILY_KEY = "brave-test-key-0123", "tavily-test-key-4567"

# (host alias, path, title, snippet, words that make it match)
DOCUMENTS = [
    ("localhost", "/pages/mlx.html", "MLX: an array framework for Apple silicon",
     "MLX is an <strong>array framework</strong> for machine learning on Apple silicon &amp; its unified memory.",
     {"mlx", "apple", "memory", "array"}),
    ("127.0.0.1", "/pages/sqlite-wal.html", "Write-Ahead Logging", "SQLite WAL: readers do not block writers.",
     {"sqlite", "wal", "journal", "concurrency"}),
    ("localhost", "/pages/asyncio.html", "asyncio — Asynchronous I/O",
     "asyncio is a library to write concurrent code using the async/await syntax.",
     {"asyncio", "python", "async", "concurrency"}),
]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any = None


@dataclass
class Internet:
    host: str
    port: int
    server: ThreadingHTTPServer
    release: threading.Event
    requests: list[Seen] = field(default_factory=list)

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def searches(self) -> list[Seen]:
        return [r for r in self.requests if r.path in ("/search", "/res/v1/web/search")]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _results(internet: Internet, q: str) -> list[dict[str, Any]]:
    words = set(q.lower().split())
    ranked = sorted(DOCUMENTS, key=lambda d: -len(words & d[4]))
    results = [{"url": internet.url(p, host), "title": t, "content": c, "engine": "duckduckgo",
                "engines": ["duckduckgo", "bing"], "score": 1.0 / (i + 1), "category": "general",
                "parsed_url": ["http", f"{host}:{internet.port}", p, "", "", ""], "positions": [i + 1]}
               for i, (host, p, t, c, _w) in enumerate(ranked)]
    if "hangpage" in words:
        results.insert(0, {"url": internet.url("/hang"), "title": "A page that never answers",
                           "content": "It hangs."})
    return results


class _Handler(BaseHTTPRequestHandler):
    internet: Internet  # set on the subclass made per server

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # a client that stopped at its size cap
            pass

    def _json(self, payload: Any, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _record(self, body: Any = None) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        self.internet.requests.append(Seen(self.command, parts.path, query, dict(self.headers.items()), body))
        return parts.path, query

    def do_GET(self) -> None:
        path, query = self._record()
        if path == "/search":
            return self._searxng(query.get("q", [""])[0], query.get("format", [""])[0])
        if path == "/res/v1/web/search":
            return self._brave(query.get("q", [""])[0])
        if path.startswith("/pages/") and (PAGES / path.removeprefix("/pages/")).is_file():
            return self._send(200, (PAGES / path.removeprefix("/pages/")).read_bytes(), "text/html; charset=utf-8")
        self._special(path, query)

    def _special(self, path: str, query: dict[str, list[str]]) -> None:
        if path == "/hang":  # accepts the connection, then never answers
            self.internet.release.wait(120)
            return
        if path == "/redirect":
            return self._send(302, b"", "text/html", {"Location": query["to"][0]})
        if path == "/loop":
            return self._send(302, b"", "text/html", {"Location": "/loop"})
        if path == "/big":
            words = b"lorem ipsum dolor sit amet " * 150_000
            body = b"<html><body><article><p>" + words + b"</p></article></body></html>"
            return self._send(200, body, "text/html")
        if path == "/doc.pdf":
            return self._send(200, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf")
        if path == "/notes.txt":
            return self._send(200, b"Plain notes: WAL means write-ahead log.\n", "text/plain; charset=utf-8")
        if path == "/setcookie":
            return self._send(200, b"<html><body><p>hi</p></body></html>", "text/html",
                              {"Set-Cookie": "session=s3cr3t; Path=/"})
        if path == "/secret":
            return self._send(200, b"<html><body><p>internal admin secret</p></body></html>", "text/html")
        self._send(404, b"<html><body><h1>Not Found</h1></body></html>", "text/html")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        path, _query = self._record(body)
        if path != "/search":
            return self._send(404, b"", "text/plain")
        if self.headers.get("Authorization") != f"Bearer {TAVILY_KEY}":
            return self._json({"detail": {"error": "Unauthorized: missing or invalid API key."}}, 401)
        results = [{"title": r["title"], "url": r["url"], "content": r["content"], "score": r["score"],
                    "raw_content": None} for r in _results(self.internet, body["query"])]
        domains = body.get("include_domains") or []
        if domains:
            results = [r for r in results if urlsplit(r["url"]).hostname in domains]
        self._json({"query": body["query"], "answer": None, "images": [],
                    "results": results[: body.get("max_results", 5)], "response_time": 0.42})

    def _searxng(self, q: str, fmt: str) -> None:
        if fmt != "json" or "forbidden" in q:  # SearXNG answers 403 when the json format is not enabled
            return self._send(403, b"<html><body>403 Forbidden</body></html>", "text/html")
        if "malformed" in q:  # a broken proxy or a half-written answer
            return self._send(200, b'{"query": "malformed", "results": [{"url": "http://', "application/json")
        if "wrongshape" in q:
            return self._json({"query": q, "results": [{"title": "no url here"}]})
        if "slowsearch" in q:
            self.internet.release.wait(120)
            return None
        results = _results(self.internet, q)
        self._json({"query": q, "number_of_results": len(results), "results": results, "answers": [],
                    "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": []})

    def _brave(self, q: str) -> None:
        if self.headers.get("X-Subscription-Token") != BRAVE_KEY:
            return self._json({"type": "ErrorResponse", "error": {"code": "SUBSCRIPTION_TOKEN_INVALID"}}, 401)
        if q.startswith("nothing"):
            return self._json({"type": "search", "query": {"original": q}})
        web = [{"title": r["title"], "url": r["url"], "description": r["content"], "age": "2 days ago"}
               for r in _results(self.internet, q)]
        self._json({"type": "search", "query": {"original": q}, "web": {"type": "search", "results": web}})


def start(host: str = "127.0.0.1") -> Internet:
    handler = type("Handler", (_Handler,), {})
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    internet = Internet(host, server.server_address[1], server, threading.Event())
    handler.internet = internet
    threading.Thread(target=server.serve_forever, name="fake-internet", daemon=True).start()
    return internet
