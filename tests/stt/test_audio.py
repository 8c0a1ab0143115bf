"""Decoders: G.711 against the stdlib reference, downmix, resampling, container sniffing, incremental PyAV."""

from __future__ import annotations

import numpy as np
import pytest

from ddx_omni.stt.audio import UnsupportedAudio, make_decoder, sniff_container

from .conftest import AUDIO, audioop, fixture_pcm


def decode_all(data: bytes, encoding: str | None, sample_rate: int | None, channels: int) -> np.ndarray:
    """A whole file through one incremental decoder, as the pre-recorded route feeds it."""
    decoder = make_decoder(encoding, sample_rate, channels)
    return np.concatenate([decoder.feed(data), decoder.flush()])


@pytest.fixture(scope="module")
def pcm() -> bytes:
    return fixture_pcm("doctor")


@pytest.mark.parametrize(("encoding", "encode", "decode"), [("mulaw", audioop.lin2ulaw, audioop.ulaw2lin),
                                                            ("alaw", audioop.lin2alaw, audioop.alaw2lin)])
def test_g711_matches_the_reference(pcm: bytes, encoding: str, encode, decode) -> None:
    coded = encode(pcm, 2)
    expected = np.frombuffer(decode(coded, 2), np.int16) / 32768.0
    assert np.array_equal(decode_all(coded, encoding, 16000, 1), expected.astype(np.float32))


def test_stereo_is_downmixed_and_odd_chunks_are_carried(pcm: bytes) -> None:
    mono = np.frombuffer(pcm, np.int16)
    stereo = np.stack([mono, np.zeros_like(mono)], axis=1).tobytes()
    decoder = make_decoder("linear16", 16000, 2)
    parts = [decoder.feed(stereo[i:i + 1001]) for i in range(0, len(stereo), 1001)] + [decoder.flush()]
    out = np.concatenate(parts)
    assert np.allclose(out, mono / 32768.0 / 2, atol=1e-6)


def test_resampling_keeps_duration(pcm: bytes) -> None:
    out = decode_all(pcm, "linear16", 48000, 1)
    assert len(out) == pytest.approx(len(pcm) / 2 / 3, abs=2)


def test_sniffing() -> None:
    assert sniff_container((AUDIO / "doctor.ogg").read_bytes()[:12]) == "ogg"
    assert sniff_container((AUDIO / "doctor.wav").read_bytes()[:12]) == "wav"
    assert sniff_container(b"\xff\xff\x00\x00" * 3) is None  # linear16 silence is not mistaken for MPEG


def test_ogg_opus_incremental_equals_whole(pcm: bytes) -> None:
    ogg = (AUDIO / "doctor.ogg").read_bytes()
    decoder = make_decoder("ogg-opus", None, 1)
    parts = [decoder.feed(ogg[i:i + 2048]) for i in range(0, len(ogg), 2048)]
    assert sum(len(p) for p in parts) > 0, "frames must come out while the stream is still arriving"
    streamed = np.concatenate(parts + [decoder.flush()])
    whole = decode_all(ogg, None, None, 1)
    assert np.allclose(streamed, whole, atol=1e-6)
    reference = np.frombuffer(pcm, np.int16) / 32768.0
    assert abs(len(whole) - len(reference)) < 160
    assert np.corrcoef(whole[:len(reference)], reference[:len(whole)])[0, 1] > 0.9


def test_garbage_in_a_container_encoding_raises() -> None:
    decoder = make_decoder("webm", None, 1)
    with pytest.raises(UnsupportedAudio):
        decoder.feed(b"\x00not webm" * 300)
        decoder.flush()
