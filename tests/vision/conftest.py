"""Fixtures of the vision tests: the tiny Qwen2-VL model, a real-mode server on it, and a stand-in image host."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import build_settings, live_server, load_script
from tests.llm.conftest import wait_ready

VLM_ID = "tiny-vlm"  # the registry id of the tiny VLM on the vision servers
IMAGE_HOST = "127.0.0.2"  # plays a public host: the servers here allow 127.0.0.2/32 as if it were one


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes, media: str = "image/png") -> str:
    import base64

    return f"data:{media};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="session")
def vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2-VL checkpoint that mlx-vlm loads offline, built once per session."""
    return Path(load_script("make_vlm").build_vlm(tmp_path_factory.mktemp("tiny_vlm")))


class _Images(BaseHTTPRequestHandler):
    """GET /png/W/H → a W×H PNG; /big → more bytes than the cap; /text → not an image."""

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if parts[0] == "png":
            body, kind = png(int(parts[1]), int(parts[2])), "image/png"
        elif parts[0] == "big":
            body, kind = b"\x89PNG" + b"\0" * 300_000, "image/png"
        else:
            body, kind = b"<html>not an image</html>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def image_host() -> Iterator[str]:
    """A real HTTP server on 127.0.0.2 serving images; yields its base URL."""
    server = ThreadingHTTPServer((IMAGE_HOST, 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{IMAGE_HOST}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def vision_server(vlm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = build_settings(tmp_path_factory.mktemp("vision"), {
        "llm.use_real_model": True, "llm.model": VLM_ID, "llm.models": [{"id": VLM_ID, "path": str(vlm_dir)}],
        "vision.allowed_networks": [f"{IMAGE_HOST}/32"],
        "vision.max_image_bytes": 200_000})
    with live_server(settings) as url:
        state = wait_ready(url, timeout=120)
        assert state["model_state"] == "ready", state
        yield url


@pytest.fixture(scope="module")
def client(vision_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{vision_server}/v1", api_key="unused", timeout=60, max_retries=0)
