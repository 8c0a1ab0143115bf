"""pocketsphinx engine: the US-English model that ships in the wheel, so it works anywhere with no download.

Finals come from a whole-segment decode (`full_utt=True`): pocketsphinx's live cepstral-mean estimate starts
from a generic prior and misrecognises a session's first seconds, while batch normalisation over the segment
gets them right. Interims, when asked for, come from a second decoder fed incrementally.
"""

from __future__ import annotations

import importlib.metadata
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pocketsphinx

from .base import SAMPLE_RATE, RecognizedWord, base_language

FRAMES_PER_SECOND = 100
_NOT_WORDS = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
_ALTERNATE = re.compile(r"\(\d+\)$")
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


class SphinxStream:
    def __init__(self, interim: bool) -> None:
        self._final = _decoder()
        self._live = _decoder() if interim else None
        self._segment: list[bytes] = []
        self._live_started = False

    def accept(self, samples: np.ndarray) -> None:
        if samples.size == 0:  # process_raw(b"") raises IndexError
            return
        pcm = _pcm(samples)
        self._segment.append(pcm)
        if self._live is not None:
            if not self._live_started:
                self._live.start_utt()
                self._live_started = True
            self._live.process_raw(pcm, False, False)

    def partial(self) -> list[RecognizedWord]:
        if self._live is None or not self._live_started or self._live.hyp() is None:
            return []
        return _words(self._live)

    def finish(self) -> list[RecognizedWord]:
        if self._live is not None and self._live_started:
            self._live.end_utt()  # keeps its cepstral-mean estimate for the next segment
            self._live_started = False
        audio, self._segment = b"".join(self._segment), []
        if not audio:
            return []
        self._final.start_utt()
        self._final.process_raw(audio + _TAIL, False, True)
        self._final.end_utt()
        return _words(self._final) if self._final.hyp() is not None else []

    def close(self) -> None:
        self._segment = []


class SphinxEngine:
    name = "sphinx"
    model = "pocketsphinx-en-us"
    version = importlib.metadata.version("pocketsphinx")
    arch = "pocketsphinx"

    def __init__(self, workers: int) -> None:
        # pocketsphinx holds no shared state between decoders: sessions decode in parallel threads.
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stt-sphinx")
        _decoder()  # fail at start, not at the first session, if the bundled model is unusable

    def supports_language(self, language: str) -> bool:
        return base_language(language) == "en"

    def open_stream(self, language: str, interim: bool) -> SphinxStream:
        return SphinxStream(interim)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
