"""The official deepgram-sdk (pinned 7.17.0) as a client: live over /v1/listen and pre-recorded POST /v1/listen."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from deepgram import AsyncDeepgramClient, DeepgramClient
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.types import (
    ListenV1Configure,
    ListenV1ConfigureFailure,
    ListenV1ConfigureSuccess,
    ListenV1Metadata,
    ListenV1Results,
)

from .conftest import AUDIO, FRAME_BYTES, content_words, fixture_pcm

KEY = "sdk-key"


def environment(base: str) -> DeepgramClientEnvironment:
    """SDK v5+: `production` is the WebSocket origin, the SDK appends /v1/listen to it."""
    ws = base.replace("http://", "ws://")
    return DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base)


async def test_sdk_live_stream_gets_typed_results_and_closing_metadata(sphinx_server) -> None:
    base = sphinx_server({"auth.api_keys": KEY})
    client = AsyncDeepgramClient(api_key=KEY, environment=environment(base))
    pcm = fixture_pcm("doctor")
    messages = []
    async with client.listen.v1.connect(model="nova-2", language="en", encoding="linear16", sample_rate="16000",
                                        channels="1", punctuate="true", interim_results="true") as socket:
        async def consume() -> None:
            async for message in socket:
                messages.append(message)

        consumer = asyncio.create_task(consume())
        await socket.send_configure(ListenV1Configure(features={"punctuate": False}))
        await socket.send_configure(ListenV1Configure(keyterms=["doctor"]))
        for i in range(0, len(pcm), FRAME_BYTES):
            await socket.send_media(pcm[i:i + FRAME_BYTES])
        await socket.send_finalize()
        await socket.send_keep_alive()
        await socket.send_close_stream()
        await asyncio.wait_for(consumer, 60)

    configured = [m for m in messages if isinstance(m, ListenV1ConfigureSuccess | ListenV1ConfigureFailure)]
    assert [type(m) for m in configured] == [ListenV1ConfigureSuccess, ListenV1ConfigureFailure]
    assert configured[1].code == "CONFIGURE_KEYTERMS_NOT_SUPPORTED"
    results = [m for m in messages if isinstance(m, ListenV1Results)]
    metadata = [m for m in messages if isinstance(m, ListenV1Metadata)]
    assert len(metadata) == 2 and metadata[-1].duration == pytest.approx(len(pcm) / 32000, abs=1e-3)
    finals = [r for r in results if r.is_final]
    assert any(r.from_finalize for r in finals)
    assert all(r.metadata.model_info.name == "pocketsphinx-en-us" for r in results)
    text = " ".join(r.channel.alternatives[0].transcript for r in finals).lower()
    assert content_words("doctor") <= set(text.replace(".", "").split())
    word = next(w for r in finals for w in r.channel.alternatives[0].words)
    assert word.punctuated_word == word.word == "please"  # punctuate=true was switched off by Configure
    assert word.end >= word.start


def test_sdk_prerecorded_file(sphinx_server) -> None:
    base = sphinx_server({"auth.api_keys": KEY})
    client = DeepgramClient(api_key=KEY, environment=environment(base))
    response = client.listen.v1.media.transcribe_file(request=(AUDIO / "garden.wav").read_bytes(), model="nova-2",
                                                      punctuate=True, utterances=True)
    alt = response.results.channels[0].alternatives[0]
    assert content_words("garden") <= set(alt.transcript.lower().replace(".", "").split())
    assert alt.words and 0.0 < alt.confidence <= 1.0
    assert response.metadata.duration == pytest.approx(len(fixture_pcm("garden")) / 32000, abs=1e-3)
    assert response.results.utterances and response.results.utterances[0].transcript


def test_prerecorded_ogg_utterances_and_errors(sphinx_server) -> None:
    base = sphinx_server({"auth.api_keys": KEY})
    auth = {"Authorization": f"Token {KEY}"}
    two = fixture_pcm("garden") + bytes(32000) + fixture_pcm("pizza")
    body = httpx.post(base + "/v1/listen?utterances=true&encoding=linear16&sample_rate=16000", content=two,
                      headers=auth, timeout=60).json()
    utterances = body["results"]["utterances"]
    assert len(utterances) == 2
    assert utterances[0]["end"] <= utterances[1]["start"]
    assert "garden" in utterances[0]["transcript"] and "pizza" in utterances[1]["transcript"]

    # behind a path prefix (an SDK v5+ `environment.base` of http://host/edge/stt)
    ogg = httpx.post(base + "/edge/stt/v1/listen", content=(AUDIO / "doctor.ogg").read_bytes(), headers=auth,
                     timeout=60)
    assert ogg.status_code == 200 and "utterances" not in ogg.json()["results"]
    assert "doctor" in ogg.json()["results"]["channels"][0]["alternatives"][0]["transcript"]

    assert httpx.post(base + "/v1/listen", content=b"x" * 100, timeout=10).status_code == 401
    bad = httpx.post(base + "/v1/listen?encoding=ogg-opus", content=b"\x00nope" * 100, headers=auth, timeout=30)
    assert bad.status_code == 400 and bad.json()["code"] == "unsupported_data"
    french = httpx.post(base + "/v1/listen?language=fr", content=two, headers=auth, timeout=30)
    assert french.status_code == 400 and "unsupported-language: fr" in french.json()["message"]
