"""Wire shapes of OpenAI's POST /v1/audio/transcriptions: the form's options and the json / verbose_json bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["word", "segment"]


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: int  # billed audio seconds, rounded up, as OpenAI reports them


class Transcription(BaseModel):
    text: str
    usage: DurationUsage


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(BaseModel):
    """Whisper's segment; the decoding statistics a non-Whisper engine lacks get neutral values."""

    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = []
    temperature: float = 0.0
    avg_logprob: float  # log of the engine's mean word confidence
    compression_ratio: float = 1.0
    no_speech_prob: float = 0.0


class TranscriptionVerbose(BaseModel):
    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    usage: DurationUsage
