"""Audio bytes → Deepgram frames for one session, synchronously (runs on the engine's executor, never the loop).

Holds the decoder, the VAD and the engine stream, and the stream-time bookkeeping: Results cover contiguous
spans of stream time (`start` of one = `start` + `duration` of the previous), counted in samples so that the
spans stay exact across Finalize.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import numpy as np

from ..core.settings import SttSettings
from .audio import SAMPLE_RATE, make_decoder
from .engines import AsrEngine, RecognizedWord
from .schemas import (
    CONFIGURABLE,
    Alternative,
    Channel,
    ConfigureFailure,
    ConfigureSuccess,
    Control,
    Frame,
    ListenOptions,
    Metadata,
    ModelInfo,
    PrerecordedChannel,
    PrerecordedMetadata,
    PrerecordedResponse,
    PrerecordedResults,
    Results,
    ResultsMetadata,
    SpeechStarted,
    Utterance,
    UtteranceEnd,
    Word,
    utc_now,
)
from .vad import Vad

STEP = SAMPLE_RATE // 10  # 100 ms
_STRIP = ".,!?;:\"()[]{}…¿¡"


@dataclass(frozen=True)
class EngineIdentity:
    """What Metadata and every Results say about the model."""

    uuid: str
    info: ModelInfo

    @classmethod
    def of(cls, engine: AsrEngine) -> EngineIdentity:
        return cls(uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ddx-omni/{engine.name}/{engine.model}")),
                   info=ModelInfo(name=engine.model, version=engine.version, arch=engine.arch))


def _seconds(samples: int) -> float:
    return round(samples / SAMPLE_RATE, 7)


def wire_words(words: list[RecognizedWord], offset: float, limit: float, options: ListenOptions) -> list[Word]:
    """Engine words (segment time) → Deepgram words (stream time, clamped and monotonic)."""
    out: list[Word] = []
    last = offset
    punctuated = options.punctuate or options.smart_format
    for i, w in enumerate(sorted(words, key=lambda w: w.start)):
        start = min(max(offset + w.start, last), limit)
        end = min(max(offset + w.end, start), limit)
        last = start
        bare = w.text.strip(_STRIP).lower() or w.text.lower()
        shown = _punctuate(w.text, first=i == 0, last=i == len(words) - 1) if punctuated else bare
        out.append(Word(word=bare, start=round(start, 4), end=round(end, 4), confidence=round(w.confidence, 4),
                        punctuated_word=shown, speaker=0))
    return out


def _punctuate(text: str, first: bool, last: bool) -> str:
    """Engines that already punctuate (parakeet) keep theirs; lower-case ones (sphinx) get sentence case."""
    if text != text.lower():
        return text
    shown = text[:1].upper() + text[1:] if first or text == "i" or text.startswith("i'") else text
    return shown + "." if last and shown[-1:] not in _STRIP else shown


def alternative(words: list[Word], options: ListenOptions) -> Alternative:
    shown = [w.punctuated_word for w in words] if options.punctuate or options.smart_format else \
        [w.word for w in words]
    confidence = round(float(np.mean([w.confidence for w in words])), 4) if words else 0.0
    return Alternative(transcript=" ".join(shown), confidence=confidence, words=words if options.words else [])


class Transcriber:
    def __init__(self, engine: AsrEngine, options: ListenOptions, settings: SttSettings, request_id: str) -> None:
        self.options = options
        self.request_id = request_id
        self.identity = EngineIdentity.of(engine)
        self._settings = settings
        self._decoder = make_decoder(options.encoding, options.sample_rate, options.channels)
        self._stream = engine.open_stream()
        silence = None if options.endpointing is False else max(options.endpointing, settings.min_endpointing_ms)
        self._vad = Vad(silence)
        self._sha = hashlib.sha256()
        self._samples = 0  # decoded 16 kHz samples so far
        self._segment_start = 0
        self._last_interim = 0
        self._heard_speech = False  # the VAD heard speech in the current segment
        self._last_word_end: float | None = None  # of words not yet closed by an UtteranceEnd
        self._channel_index = [0, options.channels] if options.multichannel else [0, 1]

    @property
    def duration(self) -> float:
        return _seconds(self._samples)

    def feed(self, data: bytes) -> list[Frame]:
        self._sha.update(data)
        return self._process(self._decoder.feed(data))

    def finalize(self) -> list[Frame]:
        return [self._final(speech_final=False, from_finalize=True)]

    def close(self) -> list[Frame]:
        """End of stream: decode what the decoder still holds, then the last final Results."""
        frames = self._process(self._decoder.flush())
        frames.append(self._final(speech_final=True, from_finalize=False))
        self._stream.close()
        return frames

    def configure(self, control: Control) -> list[Frame]:
        """Mid-stream Configure: formatting features apply from the next Results; keyterms are not supported."""
        if control.keyterms is not None:
            return [ConfigureFailure(request_id=self.request_id, code="CONFIGURE_KEYTERMS_NOT_SUPPORTED",
                                     description=f"keyterms are not supported by the {self.identity.info.name} "
                                                 f"engine")]
        known = {k: v for k, v in (control.features or {}).items() if k in CONFIGURABLE}
        self.options = self.options.model_copy(update=known)
        return [ConfigureSuccess(request_id=self.request_id)]

    def abort(self) -> None:
        """The session ended without CloseStream."""
        self._decoder.abort()
        self._stream.close()

    def metadata(self) -> Metadata:
        return Metadata(request_id=self.request_id, sha256=self._sha.hexdigest(), created=utc_now(),
                        duration=self.duration, channels=self.options.channels, models=[self.identity.uuid],
                        model_info={self.identity.uuid: self.identity.info})

    def _process(self, audio: np.ndarray) -> list[Frame]:
        """In slices, so that an endpoint cuts the segment within STEP of where the VAD found it."""
        frames: list[Frame] = []
        for at in range(0, len(audio), STEP):
            frames += self._process_slice(audio[at:at + STEP])
        return frames

    def _process_slice(self, audio: np.ndarray) -> list[Frame]:
        events = self._vad.feed(audio)
        self._stream.accept(audio)
        self._samples += len(audio)
        frames: list[Frame] = []
        self._heard_speech |= bool(events) or self._vad.in_speech
        for event in events:
            if event.kind == "start" and self.options.vad_events:
                frames.append(SpeechStarted(channel=[0], timestamp=round(event.time, 4)))
            elif event.kind == "end":
                frames.append(self._final(speech_final=True, from_finalize=False))
        if self._samples - self._segment_start >= self._settings.max_segment_s * SAMPLE_RATE:
            frames.append(self._final(speech_final=False, from_finalize=False))
        elif (self.options.interim_results and self._vad.in_speech
              and self._samples - self._last_interim >= self._settings.interim_interval_s * SAMPLE_RATE):
            frames.append(self._interim())
        frames.extend(self._utterance_end())
        return frames

    def _utterance_end(self) -> list[Frame]:
        gap_ms = self.options.utterance_end_ms
        if gap_ms is None or self._last_word_end is None or self._vad.in_speech:
            return []
        if (self._samples / SAMPLE_RATE - max(self._last_word_end, self._vad.last_voiced_end)) * 1000 < gap_ms:
            return []
        frame = UtteranceEnd(channel=self._channel_index, last_word_end=round(self._last_word_end, 4))
        self._last_word_end = None
        return [frame]

    def _final(self, speech_final: bool, from_finalize: bool) -> Results:
        heard = self._stream.finish()
        # engines hallucinate words in silence: a segment the VAD heard no speech in has none
        frame, words = self._results(heard if self._heard_speech else [], is_final=True, speech_final=speech_final,
                                     from_finalize=from_finalize)
        if words:
            self._last_word_end = words[-1].end
        self._segment_start = self._last_interim = self._samples
        self._heard_speech = self._vad.in_speech
        return frame

    def _interim(self) -> Results:
        self._last_interim = self._samples
        return self._results(self._stream.partial(), is_final=False, speech_final=False, from_finalize=False)[0]

    def _results(self, words: list[RecognizedWord], *, is_final: bool, speech_final: bool,
                 from_finalize: bool) -> tuple[Results, list[Word]]:
        """The Results for the span from the segment start to now, and its words in stream time."""
        start, end = _seconds(self._segment_start), _seconds(self._samples)
        wired = wire_words(words, start, end, self.options)
        frame = Results(channel_index=self._channel_index, duration=round(end - start, 7), start=start,
                        is_final=is_final, speech_final=speech_final, from_finalize=from_finalize,
                        channel=Channel(alternatives=[alternative(wired, self.options)]),
                        metadata=ResultsMetadata(request_id=self.request_id, model_info=self.identity.info,
                                                 model_uuid=self.identity.uuid))
        return frame, wired


def transcribe_file(engine: AsrEngine, options: ListenOptions, settings: SttSettings, request_id: str,
                    audio: bytes) -> PrerecordedResponse:
    """Pre-recorded: a whole file → Deepgram's JSON; VAD segments (split at `utt_split` s of silence) are utterances."""
    live_only = {"interim_results": False, "vad_events": False, "utterance_end_ms": None,
                 "endpointing": max(int(options.utt_split * 1000), 30)}
    transcriber = Transcriber(engine, options.model_copy(update=live_only), settings, request_id)
    frames = transcriber.feed(audio) + transcriber.close()
    finals = [f for f in frames if isinstance(f, Results) and f.is_final]
    segments = [f.channel.alternatives[0] for f in finals if f.channel.alternatives[0].transcript]
    words = [w for alt in segments for w in alt.words]
    whole = Alternative(transcript=" ".join(alt.transcript for alt in segments),
                        confidence=round(float(np.mean([alt.confidence for alt in segments])), 4) if segments else 0.0,
                        words=words)
    utterances = [Utterance(start=alt.words[0].start if alt.words else f.start,
                            end=alt.words[-1].end if alt.words else f.start + f.duration,
                            confidence=alt.confidence, transcript=alt.transcript, words=alt.words,
                            id=str(uuid.uuid4()))
                  for f in finals for alt in f.channel.alternatives if alt.transcript] if options.utterances else None
    meta = transcriber.metadata()
    return PrerecordedResponse(
        metadata=PrerecordedMetadata(**{**meta.model_dump(exclude={"type"}), "request_id": request_id}),
        results=PrerecordedResults(channels=[PrerecordedChannel(alternatives=[whole])], utterances=utterances))
