"""Speech test helpers: the committed espeak-ng fixtures, a sphinx server, and a seed-style streaming client."""

from __future__ import annotations

import asyncio
import json
import warnings
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import websockets

from ..conftest import wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # noqa: F401 (re-exported to the tests) the stdlib G.711 codec (deprecated, still in 3.11): an independent reference for tests

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
FRAME_BYTES = 2048  # 64 ms of 16 kHz linear16, as the seed's Python client sends
TIMEOUT = 60


def stt_health(base: str) -> dict[str, Any]:
    return httpx.get(base + "/health", timeout=10).json()["components"]["stt"]


def fixture_pcm(name: str) -> bytes:
    with wave.open(str(AUDIO / f"{name}.wav")) as w:
        return w.readframes(w.getnframes())


def fixture_text(name: str) -> str:
    return (AUDIO / f"{name}.txt").read_text().strip()


def content_words(name: str) -> set[str]:
    stop = {"the", "a", "for", "to", "we", "i", "with", "would"}
    return {w.strip(".,").lower() for w in fixture_text(name).split()} - stop


@dataclass
class Session:
    frames: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    subprotocol: str | None = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [f for f in self.of_type("Results") if f["is_final"]]

    @property
    def transcript(self) -> str:
        return " ".join(f["channel"]["alternatives"][0]["transcript"] for f in self.finals).strip()

    @property
    def words(self) -> list[dict[str, Any]]:
        return [w for f in self.finals for w in f["channel"]["alternatives"][0]["words"]]


def ws_url(base: str, path: str = "/v1/listen/dg", **query: Any) -> str:
    return base.replace("http://", "ws://") + path + ("?" + urlencode(query) if query else "")


async def run_session(url: str, messages: list[bytes | str | float], headers: list[tuple[str, str]] | None = None,
                      subprotocols: list[str] | None = None) -> Session:
    """Send each message in order (a float is a pause in seconds), then read frames until the server closes."""
    session = Session()
    async with websockets.connect(url, max_size=2**24, additional_headers=headers or [],
                                  subprotocols=subprotocols, open_timeout=30) as ws:
        session.subprotocol = ws.subprotocol

        async def consume() -> None:
            try:
                async for message in ws:
                    if isinstance(message, str):
                        session.frames.append(json.loads(message))
            except websockets.ConnectionClosed:
                pass

        consumer = asyncio.create_task(consume())
        try:
            for message in messages:
                if isinstance(message, float):
                    await asyncio.sleep(message)
                else:
                    await ws.send(message)
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(consumer, TIMEOUT)
    session.close_code, session.close_reason = ws.close_code, ws.close_reason or ""
    return session


def frames_of(pcm: bytes) -> list[bytes | str | float]:
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


CLOSE = json.dumps({"type": "CloseStream"})
FINALIZE = json.dumps({"type": "Finalize"})
KEEPALIVE = json.dumps({"type": "KeepAlive"})


@pytest.fixture
def sphinx_server(server_factory: Callable[..., str]) -> Callable[..., str]:
    """server(overrides=None) → base URL of a server running the sphinx engine with a 1.5 s idle timeout."""
    def start(overrides: dict[str, Any] | None = None) -> str:
        base = server_factory({"stt.engine": "sphinx", "stt.idle_timeout_s": 1.5, **(overrides or {})})
        wait_for(lambda: stt_health(base)["state"] == "ready", timeout=60)
        return base
    return start
