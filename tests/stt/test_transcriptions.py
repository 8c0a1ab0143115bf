"""POST /v1/audio/transcriptions with the official openai SDK on the sphinx engine and the speech fixtures."""

from __future__ import annotations

import io
import re
import wave
from typing import Any

import httpx
import openai
import pytest

from .conftest import AUDIO, content_words, fixture_pcm


def two_sentences_wav() -> bytes:
    """garden, one second of silence, pizza: two segments."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(fixture_pcm("garden") + bytes(32000) + fixture_pcm("pizza"))
    return out.getvalue()


@pytest.fixture
def client(sphinx_server: Any) -> openai.OpenAI:
    base = sphinx_server({"auth.api_keys": ["k"]})
    return openai.OpenAI(base_url=f"{base}/v1", api_key="k", timeout=60, max_retries=0)


def _words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def test_json_and_text(client: openai.OpenAI) -> None:
    with open(AUDIO / "garden.wav", "rb") as f:
        done = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert content_words("garden") <= _words(done.text)
    assert done.usage is not None and done.usage.seconds == -(-len(fixture_pcm("garden")) // 32000)
    text = client.audio.transcriptions.create(model="whisper-1", file=("doctor.ogg",
                                              (AUDIO / "doctor.ogg").read_bytes()), response_format="text")
    assert isinstance(text, str) and "doctor" in _words(text)


def test_verbose_json_segments_and_words(client: openai.OpenAI) -> None:
    done = client.audio.transcriptions.create(model="whisper-1", file=("two.wav", two_sentences_wav()),
                                              response_format="verbose_json",
                                              timestamp_granularities=["word", "segment"])
    duration = (len(fixture_pcm("garden")) + 32000 + len(fixture_pcm("pizza"))) / 32000
    assert done.language == "english" and done.duration == pytest.approx(duration, abs=1e-3)
    segments = done.segments or []
    assert len(segments) == 2 and [s.id for s in segments] == [0, 1]
    assert "garden" in _words(segments[0].text) and "pizza" in _words(segments[1].text)
    assert segments[0].end <= segments[1].start and segments[1].end <= duration
    words = done.words or []
    assert [w.word for w in words] == done.text.split()
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
    assert all(w.start <= w.end for w in words)
    only_words = client.audio.transcriptions.create(model="whisper-1", file=("two.wav", two_sentences_wav()),
                                                    response_format="verbose_json", timestamp_granularities=["word"])
    assert only_words.segments is None and only_words.words
    default = client.audio.transcriptions.create(model="whisper-1", file=("two.wav", two_sentences_wav()),
                                                 response_format="verbose_json")
    assert default.words is None and len(default.segments or []) == 2


def test_srt_and_vtt_cues(client: openai.OpenAI) -> None:
    srt = client.audio.transcriptions.create(model="whisper-1", file=("two.wav", two_sentences_wav()),
                                             response_format="srt")
    cues = srt.strip().split("\n\n")
    assert len(cues) == 2 and cues[0].split("\n")[0] == "1" and cues[1].split("\n")[0] == "2"
    assert re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", cues[0].split("\n")[1])
    assert "garden" in _words(cues[0]) and "pizza" in _words(cues[1])
    vtt = client.audio.transcriptions.create(model="whisper-1", file=("two.wav", two_sentences_wav()),
                                             response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n")
    blocks = vtt.strip().split("\n\n")[1:]
    assert len(blocks) == 2 and re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}",
                                             blocks[0].split("\n")[0])


def test_errors_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(model="whisper-1", file=("x.ogg", b"\x00nope" * 100))
    assert bad.value.body["code"] == "unsupported_data"
    with pytest.raises(openai.BadRequestError, match="unsupported-language: fr"):
        client.audio.transcriptions.create(model="whisper-1", file=("g.wav", (AUDIO / "garden.wav").read_bytes()),
                                           language="fr")
    with pytest.raises(openai.UnprocessableEntityError):
        client.audio.transcriptions.create(model="whisper-1", file=("g.wav", (AUDIO / "garden.wav").read_bytes()),
                                           response_format="json", timestamp_granularities=["word"])
    with pytest.raises(openai.UnprocessableEntityError):
        client.audio.transcriptions.create(model="whisper-1", file=("g.wav", b""))
    unauthorised = httpx.post(str(client.base_url) + "audio/transcriptions", files={"file": ("a.wav", b"x")},
                              timeout=10)
    assert unauthorised.status_code == 401 and unauthorised.json()["error"]["type"] == "authentication_error"
