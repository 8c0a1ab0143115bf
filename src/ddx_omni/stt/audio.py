"""Audio in: raw linear16/mulaw/alaw with numpy, compressed or container audio with PyAV, → 16 kHz mono float32.

Every decoder is incremental (`feed` bytes as they arrive, `flush` at the end) and is driven from a worker
thread, never from the event loop. Container audio is demuxed on its own thread reading from a blocking pipe,
because FFmpeg's demuxers pull bytes rather than accept them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Protocol

import av
import numpy as np
import soxr

from .schemas import CONTAINER_ENCODINGS

SAMPLE_RATE = 16000  # what every decoder produces, and what the VAD and the engines take
# Long enough for a slow demuxer to catch up with one frame; a stuck one is reported, not waited on forever.
_DEMUX_WAIT_S = 5.0


class UnsupportedAudio(Exception):
    """Bytes that cannot be decoded as the announced encoding (→ close 1003 unsupported-data)."""


class AudioDecoder(Protocol):
    def feed(self, data: bytes) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def abort(self) -> None:
        """The session ended without a flush: release threads and buffers."""


def _g711_table(law: str) -> np.ndarray:
    """The 256 G.711 code words → float32 in [-1, 1]."""
    codes = np.arange(256, dtype=np.int32)
    if law == "mulaw":
        u = ~codes & 0xFF
        sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    else:
        a = codes ^ 0x55
        sign, exponent, mantissa = a & 0x80, (a >> 4) & 0x07, a & 0x0F
        magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
        sign = 0x80 - sign  # A-law's sign bit is inverted relative to mu-law's
    values = np.where(sign != 0, -magnitude, magnitude).astype(np.float32)
    return values / 32768.0


_G711 = {"mulaw": _g711_table("mulaw"), "alaw": _g711_table("alaw")}


class _Resampler:
    """Native rate mono → 16 kHz, keeping soxr's filter state across chunks."""

    def __init__(self, rate: int) -> None:
        self._stream = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")

    def __call__(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return mono.astype(np.float32, copy=False)
        return self._stream.resample_chunk(mono.astype(np.float32, copy=False), last=last)


class RawDecoder:
    """Headerless PCM (linear16 little-endian, mulaw, alaw), interleaved channels, downmixed to mono."""

    def __init__(self, encoding: str, sample_rate: int, channels: int) -> None:
        self._width = 2 if encoding == "linear16" else 1
        self._table = _G711.get(encoding)
        self._channels = channels
        self._pending = b""
        self._resample = _Resampler(sample_rate)

    def _samples(self, data: bytes) -> np.ndarray:
        data = self._pending + data
        frame_bytes = self._width * self._channels
        usable = len(data) - len(data) % frame_bytes
        self._pending = data[usable:]
        raw = data[:usable]
        if self._table is None:
            samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        else:
            samples = self._table[np.frombuffer(raw, np.uint8)]
        return samples.reshape(-1, self._channels).mean(axis=1) if self._channels > 1 else samples

    def feed(self, data: bytes) -> np.ndarray:
        return self._resample(self._samples(data))

    def flush(self) -> np.ndarray:
        return self._resample(np.zeros(0, np.float32), last=True)

    def abort(self) -> None:
        self._pending = b""


class _Pipe:
    """A blocking byte source for FFmpeg: `read` waits for `write` until `close`. (No `seek`: a live stream.)"""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._closed = False
        self._starved = False
        self._cond = threading.Condition()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._buffer and not self._closed:
                self._starved = True
                self._cond.notify_all()
                self._cond.wait()
            self._starved = False
            size = len(self._buffer) if size is None or size < 0 else min(size, len(self._buffer))
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            return chunk

    def write(self, data: bytes) -> None:
        with self._cond:
            self._buffer += data
            self._starved = False
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_starved(self, timeout: float, alive: Callable[[], bool]) -> None:
        """Return once the demuxer has consumed everything written (or stopped)."""
        with self._cond:
            self._cond.wait_for(lambda: (self._starved and not self._buffer) or not alive(), timeout)


class ContainerDecoder:
    """Compressed or container audio (ogg-opus, webm, mp3, aac, flac, wav…) demuxed and decoded by PyAV."""

    def __init__(self, container_format: str) -> None:
        self._format = container_format
        self._pipe = _Pipe()
        self._out: queue.Queue[np.ndarray] = queue.Queue()
        self._error: BaseException | None = None
        self._decoded_any = False
        self._resample: _Resampler | None = None
        self._thread = threading.Thread(target=self._demux, name=f"demux-{container_format}", daemon=True)
        self._thread.start()

    def _demux(self) -> None:
        try:
            # Small probe sizes: the stream is live, FFmpeg must not wait for megabytes before the first frame.
            with av.open(self._pipe, mode="r", format=self._format,
                         options={"probesize": "2048", "analyzeduration": "0"}) as container:
                if not container.streams.audio:
                    raise UnsupportedAudio("no audio stream")
                stream = container.streams.audio[0]
                mono = av.AudioResampler(format="flt", layout="mono", rate=stream.codec_context.sample_rate or None)
                for frame in container.decode(stream):
                    self._emit(mono, frame)
                self._emit(mono, None)
        except Exception as exc:  # surfaced to the session thread at its next feed/flush
            self._error = exc
        finally:
            self._pipe.close()

    def _emit(self, mono: av.AudioResampler, frame: av.AudioFrame | None) -> None:
        for out in mono.resample(frame):
            if self._resample is None:
                self._resample = _Resampler(out.sample_rate)
            self._out.put(out.to_ndarray().reshape(-1))

    def _drain(self, last: bool = False) -> np.ndarray:
        parts = []
        while True:
            try:
                parts.append(self._out.get_nowait())
            except queue.Empty:
                break
        if self._error is not None and not (last and self._decoded_any and isinstance(self._error, EOFError)):
            raise UnsupportedAudio(str(self._error) or type(self._error).__name__)
        if parts:
            self._decoded_any = True
        if self._resample is None:
            return np.zeros(0, np.float32)
        return self._resample(np.concatenate(parts) if parts else np.zeros(0, np.float32), last=last)

    def feed(self, data: bytes) -> np.ndarray:
        self._pipe.write(data)
        self._pipe.wait_starved(_DEMUX_WAIT_S, self._thread.is_alive)
        return self._drain()

    def flush(self) -> np.ndarray:
        self._pipe.close()
        self._thread.join(_DEMUX_WAIT_S)
        out = self._drain(last=True)
        if not self._decoded_any:
            raise UnsupportedAudio(f"no decodable {self._format} audio")
        return out

    def abort(self) -> None:
        self._pipe.close()


_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"OggS", "ogg"), (0, b"\x1a\x45\xdf\xa3", "matroska"), (0, b"RIFF", "wav"), (0, b"fLaC", "flac"),
    (0, b"ID3", "mp3"), (4, b"ftyp", "mp4"),
)


def sniff_container(head: bytes) -> str | None:
    """The demuxer for bytes that start with a container signature, else None (headerless PCM).

    Bare MPEG/ADTS frame syncs (0xFFF…) are not sniffed: a linear16 stream starting at sample -1 looks the same.
    """
    for offset, magic, fmt in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return fmt
    return None


class SniffingDecoder:
    """No `encoding` given: a container if the first bytes say so (browsers' MediaRecorder), else linear16."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        self._sample_rate, self._channels = sample_rate, channels
        self._inner: AudioDecoder | None = None

    def feed(self, data: bytes) -> np.ndarray:
        if self._inner is None:
            fmt = sniff_container(data[:12])
            self._inner = ContainerDecoder(fmt) if fmt else RawDecoder("linear16", self._sample_rate, self._channels)
        return self._inner.feed(data)

    def flush(self) -> np.ndarray:
        return self._inner.flush() if self._inner is not None else np.zeros(0, np.float32)

    def abort(self) -> None:
        if self._inner is not None:
            self._inner.abort()


def make_decoder(encoding: str | None, sample_rate: int | None, channels: int) -> AudioDecoder:
    """The decoder for a session's `encoding` (already checked against SUPPORTED_ENCODINGS)."""
    rate = sample_rate or SAMPLE_RATE
    if encoding is None:
        return SniffingDecoder(rate, channels)
    if encoding in CONTAINER_ENCODINGS:
        return ContainerDecoder(CONTAINER_ENCODINGS[encoding])
    return RawDecoder(encoding, rate, channels)

