"""pocketsphinx engine: the US-English model that ships in the wheel, so it works anywhere with no download.

Each session decodes incrementally (`full_utt=False`), so a final costs only the end of the search. But the
live cepstral-mean (CMN) estimate starts from a generic prior and misrecognises a session's first seconds.
So once the session's first segment holds 2 s of audio, those seconds are decoded whole (`full_utt=True`,
batch CMN) in the background; the CMN that pass measured seeds the incremental decoder, which re-runs the
segment so far and is from then on as accurate as the batch pass. A first segment that ends before the seed
is ready is decoded whole at its endpoint.

pocketsphinx holds the GIL while it decodes, so whole decodes run in a small process pool: on a thread they
would stall the event loop, and every other session, for their duration. The incremental decoder stays in
the session's thread, where a 64 ms chunk holds the GIL for ~10 ms; idle ones are kept for the next
session, since building one holds the GIL for ~0.2 s.
"""

from __future__ import annotations

import atexit
import functools
import importlib.metadata
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pocketsphinx

from .base import SAMPLE_RATE, RecognizedWord, base_language

FRAMES_PER_SECOND = 100
_NOT_WORDS = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
_ALTERNATE = re.compile(r"\(\d+\)$")
# Audio (incl. leading silence) whose whole decode gives a CMN as good as the full segment's (measured on the
# fixtures: 1 s is not enough, 2 s is).
SEED_BYTES = 2 * SAMPLE_RATE * 2
# Quiet noise after a segment: the search only commits the last word once it sees silence after it, and an
# endpoint cuts the segment ~0.3 s into the pause. (Digital zeros would upset the energy features.)
_TAIL = (np.random.default_rng(0).normal(0, 8, SAMPLE_RATE * 3 // 10)).astype("<i2").tobytes()


def _decoder() -> pocketsphinx.Decoder:
    return pocketsphinx.Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")


def _pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _words(decoder: pocketsphinx.Decoder) -> list[RecognizedWord]:
    words = []
    for seg in decoder.seg():
        if _NOT_WORDS.match(seg.word):
            continue
        words.append(RecognizedWord(text=_ALTERNATE.sub("", seg.word), start=seg.start_frame / FRAMES_PER_SECOND,
                                    end=(seg.end_frame + 1) / FRAMES_PER_SECOND,
                                    confidence=float(min(max(seg.prob, 0.0), 1.0))))
    return words


_PROCESS_DECODER: pocketsphinx.Decoder | None = None


def decode_segment(audio: bytes) -> tuple[list[RecognizedWord], str]:
    """Runs in a pool process: one whole segment (linear16) → its words and the CMN it measured."""
    global _PROCESS_DECODER
    if _PROCESS_DECODER is None:
        _PROCESS_DECODER = _decoder()
    decoder = _PROCESS_DECODER
    decoder.start_utt()
    decoder.process_raw(audio + _TAIL, False, True)
    decoder.end_utt()
    return (_words(decoder) if decoder.hyp() is not None else []), decoder.get_cmn(False)


def _exit_with_parent(parent: int) -> None:
    """Pool initializer: a worker whose server died (killed, crashed) exits instead of lingering as an orphan."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@functools.cache
def decode_pool(processes: int) -> ProcessPoolExecutor:
    """One pool per process, shared by every engine instance (it is stateless; app restarts in tests reuse it)."""
    # spawn, not fork: the server process has threads (and maybe MLX) that a fork would copy half-done
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))
    for future in [pool.submit(decode_segment, _TAIL) for _ in range(processes)]:
        future.result()
    atexit.register(pool.shutdown, wait=False, cancel_futures=True)
    return pool


def submit_whole(audio: bytes, processes: int) -> Future[tuple[list[RecognizedWord], str]]:
    """`decode_segment` in the pool; a pool whose worker died (killed, out of memory) is replaced."""
    try:
        return decode_pool(processes).submit(decode_segment, audio)
    except BrokenProcessPool:
        decode_pool.cache_clear()
        return decode_pool(processes).submit(decode_segment, audio)


def decode_whole(audio: bytes, processes: int) -> tuple[list[RecognizedWord], str]:
    try:
        return submit_whole(audio, processes).result()
    except BrokenProcessPool:  # it broke while decoding: once more on a fresh pool
        return submit_whole(audio, processes).result()


class DecoderCache:
    """Idle incremental decoders, reused across sessions: building one loads the model and holds the GIL ~0.2 s."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._idle: list[pocketsphinx.Decoder] = []
        self._lock = threading.Lock()

    def take(self) -> pocketsphinx.Decoder:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _decoder()

    def give(self, decoder: pocketsphinx.Decoder, in_utterance: bool) -> None:
        if in_utterance:
            decoder.end_utt()
        decoder.set_cmn(decoder.config["cmninit"])  # the next session starts from the generic prior again
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(decoder)


class SphinxStream:
    def __init__(self, processes: int, decoders: DecoderCache) -> None:
        self._processes = processes
        self._decoders = decoders
        self._live: pocketsphinx.Decoder | None = decoders.take()
        self._started = False
        self._cold: list[bytes] | None = []  # the segment's audio, kept until the CMN is seeded
        self._seed: Future[tuple[list[RecognizedWord], str]] | None = None  # whole-decode of the first SEED_BYTES
        self._seed_at = SEED_BYTES  # cold audio needed before (another) seed decode

    def accept(self, samples: np.ndarray) -> None:
        if samples.size == 0 or self._live is None:  # process_raw(b"") raises IndexError
            return
        pcm = _pcm(samples)
        if not self._started:
            self._live.start_utt()
            self._started = True
        self._live.process_raw(pcm, False, False)
        if self._cold is not None:
            self._cold.append(pcm)
            self._seed_cmn()

    def _seed_cmn(self) -> None:
        """Seed the CMN mid-utterance from a whole decode of the segment's first seconds, then re-run the live
        decoder over the segment with it: the segment's final then needs no whole decode at the endpoint."""
        assert self._cold is not None and self._live is not None
        if self._seed is None:
            size = sum(len(chunk) for chunk in self._cold)
            if size >= self._seed_at:
                self._seed = submit_whole(b"".join(self._cold), self._processes)
                self._seed_at = size + SEED_BYTES
            return
        if not self._seed.done():
            return
        seed, self._seed = self._seed, None
        try:
            words, cmn = seed.result()
        except Exception:  # a broken pool: the final's whole decode will try again
            return
        if not words:  # only silence so far: no usable estimate yet
            return
        self._live.end_utt()
        self._live.set_cmn(cmn)
        self._live.start_utt()
        audio, self._cold = b"".join(self._cold), None
        for at in range(0, len(audio), 4096):  # in pieces: each holds the GIL for a few ms only
            self._live.process_raw(audio[at:at + 4096], False, False)

    def partial(self) -> list[RecognizedWord]:
        if self._live is None or not self._started or self._live.hyp() is None:
            return []
        return _words(self._live)

    def finish(self) -> list[RecognizedWord]:
        if self._live is None or not self._started:
            return []
        self._live.process_raw(_TAIL, False, False)
        self._live.end_utt()
        self._started = False
        live = _words(self._live) if self._live.hyp() is not None else []
        if self._cold is None:
            return live
        audio, self._cold, self._seed, self._seed_at = b"".join(self._cold), [], None, SEED_BYTES
        words, cmn = decode_whole(audio, self._processes)
        if words:  # a segment with speech measured a usable CMN: from now on the live pass is enough
            self._live.set_cmn(cmn)
            self._cold = None
        return words

    def close(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            self._decoders.give(live, in_utterance=self._started)
        self._cold = self._seed = None


class SphinxEngine:
    name = "sphinx"
    model = "pocketsphinx-en-us"
    version = importlib.metadata.version("pocketsphinx")
    arch = "pocketsphinx"

    def __init__(self, workers: int, processes: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stt-sphinx")
        self._processes = processes
        decode_pool(processes)  # start the workers now: fail at start, not at the first session
        self._decoders = DecoderCache(keep=workers)
        self._decoders.give(_decoder(), in_utterance=False)  # the first session does not wait for one

    def supports_language(self, language: str) -> bool:
        return base_language(language) == "en"

    def open_stream(self) -> SphinxStream:
        return SphinxStream(self._processes, self._decoders)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
