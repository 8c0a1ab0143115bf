"""Live WebSocket protocol over the sphinx engine, driven by a seed-style `websockets` client."""

from __future__ import annotations

import asyncio
import hashlib
import json

import httpx
import numpy as np
import pytest

from ..conftest import wait_for
from .conftest import (
    AUDIO,
    CLOSE,
    FINALIZE,
    KEEPALIVE,
    audioop,
    content_words,
    fixture_pcm,
    frames_of,
    run_session,
    stt_health,
    ws_url,
)

SILENCE_1S = bytes(32000)
CLOSED_1000 = 'ddx_stt_sessions_total{close_code="1000",engine="sphinx"}'


def metric(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def assert_results_shape(frame: dict) -> None:
    assert set(frame) >= {"type", "channel_index", "duration", "start", "is_final", "speech_final",
                          "from_finalize", "channel", "metadata"}
    assert isinstance(frame["channel_index"], list) and all(isinstance(i, int) for i in frame["channel_index"])
    assert isinstance(frame["start"], float | int) and isinstance(frame["duration"], float | int)
    for key in ("is_final", "speech_final", "from_finalize"):
        assert isinstance(frame[key], bool)
    alt = frame["channel"]["alternatives"][0]
    assert isinstance(alt["transcript"], str) and isinstance(alt["confidence"], float | int)
    for word in alt["words"]:
        assert set(word) >= {"word", "start", "end", "confidence", "punctuated_word", "speaker"}
        assert word["speaker"] == 0 and 0.0 <= word["confidence"] <= 1.0
    meta = frame["metadata"]
    assert meta["request_id"] and meta["model_uuid"]
    assert set(meta["model_info"]) == {"name", "version", "arch"}


async def test_seed_client_transcribes_and_frames_follow_the_contract(sphinx_server) -> None:
    base = sphinx_server()
    pcm = fixture_pcm("doctor")
    url = ws_url(base, model="nova-2", language="en", encoding="linear16", sample_rate=16000, channels=1,
                 punctuate="true", words="true", interim_results="true")
    session = await run_session(url, frames_of(pcm) + [CLOSE])

    assert session.close_code == 1000
    assert [f["type"] for f in session.frames][0] == "Metadata"
    assert session.frames[-1]["type"] == "Metadata"
    assert session.frames[-2]["type"] == "Results" and session.frames[-2]["is_final"]
    opening, closing = session.frames[0], session.frames[-1]
    for meta in (opening, closing):
        assert set(meta) >= {"transaction_key", "request_id", "sha256", "created", "duration", "channels",
                             "models", "model_info"}
        assert meta["models"] == list(meta["model_info"]) and meta["channels"] == 1
    assert closing["sha256"] == hashlib.sha256(pcm).hexdigest()
    assert closing["duration"] == pytest.approx(len(pcm) / 32000, abs=1e-3)
    assert closing["request_id"] == opening["request_id"]

    results = session.of_type("Results")
    for frame in results:
        assert_results_shape(frame)
        assert frame["metadata"]["request_id"] == opening["request_id"]
        assert frame["metadata"]["model_uuid"] == opening["models"][0]
    assert any(not f["is_final"] for f in results), "interim_results=true must produce interim Results"
    assert content_words("doctor") <= set(session.transcript.lower().strip(".").replace(".", "").split())
    assert session.finals[0]["channel"]["alternatives"][0]["words"][0]["punctuated_word"] == "Please"


async def test_finals_tile_stream_time_and_words_are_monotonic(sphinx_server) -> None:
    base = sphinx_server()
    pcm = fixture_pcm("garden") + SILENCE_1S + fixture_pcm("doctor")
    half = len(pcm) // 2 // 2048 * 2048
    session = await run_session(ws_url(base), frames_of(pcm[:half]) + [FINALIZE] + frames_of(pcm[half:]) + [CLOSE])

    finals = session.finals
    assert len(finals) >= 3  # an endpoint, the Finalize, the close
    position = 0.0
    for frame in finals:
        assert frame["start"] == pytest.approx(position, abs=1e-6)
        position = frame["start"] + frame["duration"]
    assert position == pytest.approx(len(pcm) / 32000, abs=1e-3)
    starts = [w["start"] for w in session.words]
    assert starts == sorted(starts)
    for word in session.words:
        assert 0.0 <= word["start"] <= word["end"] <= len(pcm) / 32000
    text = set(session.transcript.lower().split())
    assert len(content_words("garden") & text) >= 3 and len(content_words("doctor") & text) >= 3


async def test_finalize_mid_stream_flushes_and_keeps_the_session_open(sphinx_server) -> None:
    base = sphinx_server()
    pcm = fixture_pcm("doctor")
    cut = 2048 * 40  # ~2.6 s: inside the sentence
    session = await run_session(ws_url(base), frames_of(pcm[:cut]) + [FINALIZE, 0.5] + frames_of(pcm[cut:]) + [CLOSE])

    flushed = [f for f in session.finals if f["from_finalize"]]
    assert len(flushed) == 1
    assert flushed[0]["start"] + flushed[0]["duration"] == pytest.approx(cut / 32000, abs=1e-6)
    assert flushed[0]["channel"]["alternatives"][0]["transcript"]  # speech before the cut was transcribed
    after = session.frames.index(flushed[0])
    assert any(f["type"] == "Results" and f["is_final"] for f in session.frames[after + 1:])
    assert session.close_code == 1000


async def test_endpointing_vad_events_and_utterance_end(sphinx_server) -> None:
    base = sphinx_server()
    pcm = fixture_pcm("garden") + SILENCE_1S * 2
    url = ws_url(base, vad_events="true", utterance_end_ms=1000, interim_results="true", endpointing=300)
    session = await run_session(url, frames_of(pcm) + [CLOSE])

    started = session.of_type("SpeechStarted")
    assert len(started) == 1 and started[0]["channel"] == [0]
    assert 0.1 <= started[0]["timestamp"] <= 0.6  # the fixture's speech begins at 0.25 s
    speech_final = [f for f in session.finals if f["speech_final"] and f["channel"]["alternatives"][0]["words"]]
    assert speech_final, "the silence after the sentence must end the utterance"
    ends = session.of_type("UtteranceEnd")
    assert len(ends) == 1 and ends[0]["channel"] == [0, 1]
    last_word_end = speech_final[0]["channel"]["alternatives"][0]["words"][-1]["end"]
    assert ends[0]["last_word_end"] == pytest.approx(last_word_end, abs=1e-3)
    order = [f["type"] for f in session.frames]
    assert order.index("SpeechStarted") < order.index("UtteranceEnd")


async def test_no_vad_events_without_asking_and_silence_has_no_words(sphinx_server) -> None:
    base = sphinx_server()
    session = await run_session(ws_url(base), frames_of(SILENCE_1S * 2) + [CLOSE])
    assert not session.of_type("SpeechStarted") and not session.of_type("UtteranceEnd")
    assert session.transcript == "" and session.close_code == 1000


async def test_keepalive_resets_the_idle_timer_and_silence_times_out(sphinx_server) -> None:
    base = sphinx_server()  # idle timeout 1.5 s
    kept = await run_session(ws_url(base), [KEEPALIVE, 1.0, KEEPALIVE, 1.0, KEEPALIVE, 1.0, CLOSE])
    assert kept.close_code == 1000
    assert [f["type"] for f in kept.frames] == ["Metadata", "Results", "Metadata"]  # KeepAlive has no reply

    idle = await run_session(ws_url(base), [0.2, 3.0])
    assert (idle.close_code, idle.close_reason) == (1011, "NET-0001")


@pytest.mark.parametrize("text", ["not json", json.dumps({"type": "Bogus"}), json.dumps({"no": "type"})])
async def test_bad_control_closes_1008_data_0000(sphinx_server, text: str) -> None:
    session = await run_session(ws_url(sphinx_server()), [text, 1.0])
    assert (session.close_code, session.close_reason) == (1008, "DATA-0000")


async def test_empty_binary_frame_is_ignored(sphinx_server) -> None:
    pcm = fixture_pcm("doctor")
    session = await run_session(ws_url(sphinx_server()), [b""] + frames_of(pcm) + [b"", CLOSE])
    assert session.close_code == 1000
    assert session.frames[-1]["sha256"] == hashlib.sha256(pcm).hexdigest()


@pytest.mark.parametrize(("query", "code", "reason"), [
    ({"encoding": "speex"}, 1003, "unsupported-encoding: speex"),
    ({"language": "fr"}, 1003, "unsupported-language: fr"),
    ({"channels": 3}, 1008, "channels-too-many"),
    ({"sample_rate": 96000}, 1008, "sample-rate-too-high"),
    ({"sample_rate": "fast"}, 1008, "DATA-0000 invalid query parameter: sample_rate"),
])
async def test_refused_options_close_with_code_and_reason(sphinx_server, query, code, reason) -> None:
    session = await run_session(ws_url(sphinx_server(), **query), [0.5])
    assert session.close_code == code
    assert session.close_reason.startswith(reason)


async def test_caps_come_from_settings(sphinx_server) -> None:
    base = sphinx_server({"stt.audio_max_channels": 4, "stt.audio_max_sample_rate": 96000})
    pcm = fixture_pcm("doctor")
    session = await run_session(ws_url(base, channels=3, sample_rate=96000), [pcm[:6144], CLOSE])
    assert session.close_code == 1000


async def test_undecodable_audio_closes_1003_unsupported_data(sphinx_server) -> None:
    session = await run_session(ws_url(sphinx_server(), encoding="ogg-opus"), [b"\x00garbage" * 512, CLOSE, 1.0])
    assert (session.close_code, session.close_reason) == (1003, "unsupported-data")


async def test_unknown_query_parameters_are_ignored(sphinx_server) -> None:
    url = ws_url(sphinx_server(), keywords="doctor:2", tag="x", diarize="true", smart_format="true",
                 numerals="true", multichannel="false", profanity_filter="false")
    session = await run_session(url, frames_of(fixture_pcm("doctor")) + [CLOSE])
    assert session.close_code == 1000 and "doctor" in session.transcript.lower()


async def test_ogg_opus_decodes_to_the_same_words(sphinx_server) -> None:
    base = sphinx_server()
    ogg = (AUDIO / "doctor.ogg").read_bytes()
    opus = await run_session(ws_url(base, encoding="ogg-opus"), frames_of(ogg) + [CLOSE])
    sniffed = await run_session(ws_url(base), frames_of(ogg) + [CLOSE])  # no encoding: the container is detected
    pcm = await run_session(ws_url(base), frames_of(fixture_pcm("doctor")) + [CLOSE])
    assert opus.close_code == sniffed.close_code == 1000
    assert opus.frames[-1]["duration"] == pytest.approx(pcm.frames[-1]["duration"], abs=0.03)
    for session in (opus, sniffed):
        assert len(content_words("doctor") & set(session.transcript.lower().split())) >= 3


async def test_mulaw_8khz_stereo_is_decoded_downmixed_and_resampled(sphinx_server) -> None:
    import soxr

    pcm16 = np.frombuffer(fixture_pcm("garden"), np.int16)
    pcm8 = (soxr.resample(pcm16.astype(np.float32) / 32768, 16000, 8000) * 32767).astype(np.int16)
    stereo = np.repeat(pcm8, 2).tobytes()
    mulaw = audioop.lin2ulaw(stereo, 2)
    url = ws_url(sphinx_server(), encoding="mulaw", sample_rate=8000, channels=2)
    session = await run_session(url, [mulaw[i:i + 1024] for i in range(0, len(mulaw), 1024)] + [CLOSE])
    assert session.close_code == 1000 and session.frames[-1]["channels"] == 2
    assert session.frames[-1]["duration"] == pytest.approx(len(pcm8) / 8000, abs=0.01)
    assert len(content_words("garden") & set(session.transcript.lower().split())) >= 2


@pytest.mark.parametrize("path", ["/v1/listen", "/edge/stt/v1/listen"])
async def test_listen_and_prefixed_paths_serve_the_same_protocol(sphinx_server, path: str) -> None:
    session = await run_session(ws_url(sphinx_server(), path), frames_of(fixture_pcm("garden")) + [CLOSE])
    assert session.close_code == 1000 and "garden" in session.transcript.lower()


async def test_frames_carry_the_request_id_of_the_upgrade_and_the_logs(sphinx_server) -> None:
    base = sphinx_server()
    session = await run_session(ws_url(base), frames_of(fixture_pcm("garden")) + [CLOSE],
                                headers=[("X-Request-ID", "trace-ws-42")])
    assert session.close_code == 1000
    assert {f["request_id"] for f in session.of_type("Metadata")} == {"trace-ws-42"}
    assert {f["metadata"]["request_id"] for f in session.of_type("Results")} == {"trace-ws-42"}
    r = httpx.post(f"{base}/v1/listen", content=(AUDIO / "garden.wav").read_bytes(), timeout=60)
    assert r.status_code == 200 and r.json()["metadata"]["request_id"] == r.headers["x-request-id"]


async def test_health_and_metrics_stay_responsive_while_sessions_stream(sphinx_server) -> None:
    base = sphinx_server()
    pcm = fixture_pcm("pizza")
    paced = []
    for frame in frames_of(pcm):
        paced += [frame, 0.02]
    sessions = [asyncio.create_task(run_session(ws_url(base), paced + [CLOSE])) for _ in range(3)]
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        closed_before = metric((await client.get("/metrics")).text, CLOSED_1000)
        await asyncio.sleep(0.5)
        seen = []
        while not all(s.done() for s in sessions):
            health = (await client.get("/health")).json()["components"]["stt"]
            seen.append(health["sessions"])
            assert health["state"] == "ready" and health["engine"] == "sphinx"
            await asyncio.sleep(0.1)
        done = await asyncio.gather(*sessions)
        metrics = (await client.get("/metrics")).text
    assert max(seen) >= 2  # health answered (within 5 s each) while several sessions were live
    assert [s.close_code for s in done] == [1000] * 3, [(s.close_code, s.close_reason) for s in done]
    # the registry is process-wide: count what this test added
    assert metric(metrics, CLOSED_1000) - closed_before == 3
    assert metric(metrics, "ddx_stt_sessions_active") == 0
    assert "ddx_stt_final_latency_seconds_count" in metrics


async def test_server_stop_closes_live_sessions_with_1001(server_factory, make_settings) -> None:
    from ddx_omni.stt.service import SttService

    class LoopKeepingService(SttService):  # the test stops it from its own thread, on the server's loop
        async def start(self) -> None:
            self.loop = asyncio.get_running_loop()
            await super().start()

    service = LoopKeepingService(make_settings({"stt.engine": "sphinx"}).stt)
    base = server_factory({"stt.engine": "sphinx"}, components={"stt": service})
    await asyncio.to_thread(lambda: wait_for(lambda: stt_health(base)["state"] == "ready", timeout=60))
    pcm = fixture_pcm("garden")

    async def stop_when_live() -> None:
        while not service.sessions:
            await asyncio.sleep(0.05)
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(service.stop(), service.loop))

    stopper = asyncio.create_task(stop_when_live())
    session = await run_session(ws_url(base), frames_of(pcm[:8192]) + [3.0])
    await stopper
    assert (session.close_code, session.close_reason) == (1001, "going away")


async def test_sessions_beyond_max_sessions_are_refused_1013(sphinx_server) -> None:
    base = sphinx_server({"stt.max_sessions": 1})
    first = asyncio.create_task(run_session(ws_url(base), [0.2, 1.0, CLOSE]))
    await asyncio.sleep(0.6)
    second = await run_session(ws_url(base), [0.2])
    assert (second.close_code, second.close_reason) == (1013, "too-many-sessions")
    assert (await first).close_code == 1000


async def test_endpointing_false_leaves_finals_to_close(sphinx_server) -> None:
    pcm = fixture_pcm("garden") + SILENCE_1S + fixture_pcm("doctor")
    session = await run_session(ws_url(sphinx_server(), endpointing="false"), frames_of(pcm) + [CLOSE])
    assert len(session.finals) == 1  # no silence endpoint: one final, on CloseStream
    final = session.finals[0]
    assert final["start"] == 0.0 and final["duration"] == pytest.approx(len(pcm) / 32000, abs=1e-3)
    assert "garden" in session.transcript  # both sentences are in it (sphinx garbles the second in so long a span)
    assert final["channel"]["alternatives"][0]["words"][-1]["start"] > 4.0


async def test_a_killed_decode_worker_is_replaced(sphinx_server) -> None:
    import os
    import signal

    from ddx_omni.stt.engines.sphinx import decode_pool

    base = sphinx_server({"stt.sphinx_processes": 1})
    for process in list(decode_pool(1)._processes.values()):  # what an OOM kill would do
        os.kill(process.pid, signal.SIGKILL)
    await asyncio.sleep(0.5)
    session = await run_session(ws_url(base), frames_of(fixture_pcm("garden")) + [CLOSE])
    assert session.close_code == 1000 and "garden" in session.transcript
