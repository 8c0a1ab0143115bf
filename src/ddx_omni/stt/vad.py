"""Voice-activity detection with webrtcvad (a GMM speech model, not an amplitude threshold).

Speech starts after `START_FRAMES` consecutive voiced 30 ms frames (so clicks do not count) and ends after
`silence_ms` of unvoiced frames; event times are seconds of stream time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import webrtcvad

from .audio import SAMPLE_RATE

FRAME = SAMPLE_RATE * 30 // 1000  # samples per 30 ms frame
START_FRAMES = 3  # 90 ms of voiced frames
AGGRESSIVENESS = 2  # 0 (lenient) … 3 (strict): 2 rejects steady background noise without clipping words


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["start", "end"]
    time: float  # start: first voiced frame's start; end: last voiced frame's end


class Vad:
    def __init__(self, silence_ms: int | None) -> None:
        """`silence_ms=None`: report speech starts only (no endpoint by silence)."""
        self._vad = webrtcvad.Vad(AGGRESSIVENESS)
        self._end_frames = None if silence_ms is None else max(1, -(-silence_ms // 30))
        self._pending = np.zeros(0, np.int16)
        self._frame_index = 0
        self._voiced_run = 0
        self._unvoiced_run = 0
        self.in_speech = False
        self.last_voiced_end = 0.0  # end of the last voiced frame seen

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
        self._pending = np.concatenate([self._pending, pcm])
        events: list[VadEvent] = []
        while len(self._pending) >= FRAME:
            frame, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            event = self._step(self._vad.is_speech(frame.tobytes(), SAMPLE_RATE))
            if event is not None:
                events.append(event)
        return events

    def _step(self, voiced: bool) -> VadEvent | None:
        start = self._frame_index * FRAME / SAMPLE_RATE
        self._frame_index += 1
        if voiced:
            self._voiced_run += 1
            self._unvoiced_run = 0
            self.last_voiced_end = start + FRAME / SAMPLE_RATE
            if not self.in_speech and self._voiced_run >= START_FRAMES:
                self.in_speech = True
                return VadEvent("start", start - (START_FRAMES - 1) * FRAME / SAMPLE_RATE)
            return None
        self._voiced_run = 0
        self._unvoiced_run += 1
        if self.in_speech and self._end_frames is not None and self._unvoiced_run >= self._end_frames:
            self.in_speech = False
            return VadEvent("end", self.last_voiced_end)
        return None
