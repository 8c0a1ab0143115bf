"""Deepgram wire shapes: query options, the frames a live session sends, control messages, the pre-recorded body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RAW_ENCODINGS = ("linear16", "mulaw", "alaw")
# Deepgram's names → the PyAV demuxer that reads them; "opus" on Deepgram means Ogg-Opus.
CONTAINER_ENCODINGS = {"opus": "ogg", "ogg-opus": "ogg", "ogg": "ogg", "webm": "matroska", "mp3": "mp3",
                       "aac": "aac", "flac": "flac", "wav": "wav", "mp4": "mp4", "m4a": "mp4"}
SUPPORTED_ENCODINGS = RAW_ENCODINGS + tuple(CONTAINER_ENCODINGS)
CONFIGURABLE = ("punctuate", "smart_format", "words")  # features a Configure message may switch mid-stream


def _flag(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return value


class ListenOptions(BaseModel):
    """The query parameters ddx-omni reads; every other Deepgram parameter is accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    language: str = "en"
    encoding: str | None = None  # None: linear16, unless the first bytes carry a container signature
    sample_rate: int | None = Field(None, ge=1)
    channels: int = Field(1, ge=1)
    interim_results: bool = False
    punctuate: bool = False
    smart_format: bool = False
    words: bool = True
    endpointing: int | Literal[False] = 10  # ms of silence that ends an utterance; False: never by silence
    utterance_end_ms: int | None = Field(None, ge=0)
    vad_events: bool = False
    multichannel: bool = False
    diarize: bool = False
    utterances: bool = False  # pre-recorded only
    utt_split: float = Field(0.8, gt=0)  # pre-recorded only: seconds of silence between utterances

    _flags = field_validator("interim_results", "punctuate", "smart_format", "words", "vad_events",
                             "multichannel", "diarize", "utterances", mode="before")(_flag)

    @field_validator("endpointing", mode="before")
    @classmethod
    def _endpointing(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("false", "off", "none"):
            return False
        if isinstance(value, str) and value.strip().lower() == "true":
            return 10
        return value

    @field_validator("encoding", "language", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class ModelInfo(BaseModel):
    name: str
    version: str
    arch: str


class Word(BaseModel):
    word: str
    start: float
    end: float
    confidence: float
    punctuated_word: str
    speaker: int = 0
    speaker_confidence: float | None = None


class Alternative(BaseModel):
    transcript: str
    confidence: float
    words: list[Word]


class Channel(BaseModel):
    alternatives: list[Alternative]


class ResultsMetadata(BaseModel):
    request_id: str
    model_info: ModelInfo
    model_uuid: str


class Results(BaseModel):
    type: Literal["Results"] = "Results"
    channel_index: list[int]
    duration: float
    start: float
    is_final: bool
    speech_final: bool
    from_finalize: bool
    channel: Channel
    metadata: ResultsMetadata


class PrerecordedMetadata(BaseModel):
    """The stream's summary: the pre-recorded response's `metadata`, and (with `type`) the live Metadata frame."""

    transaction_key: str = "deprecated"
    request_id: str
    sha256: str
    created: str
    duration: float
    channels: int
    models: list[str]
    model_info: dict[str, ModelInfo]


class Metadata(PrerecordedMetadata):
    type: Literal["Metadata"] = "Metadata"


class SpeechStarted(BaseModel):
    type: Literal["SpeechStarted"] = "SpeechStarted"
    channel: list[int]
    timestamp: float


class UtteranceEnd(BaseModel):
    type: Literal["UtteranceEnd"] = "UtteranceEnd"
    channel: list[int]
    last_word_end: float



class Control(BaseModel):
    """A client text frame: KeepAlive, Finalize, CloseStream, or Configure (deepgram-sdk 7.x `send_configure`)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["KeepAlive", "Finalize", "CloseStream", "Configure"]
    keyterms: list[str] | None = None  # Configure only
    features: dict[str, bool] | None = None  # Configure only


class ConfigureSuccess(BaseModel):
    type: Literal["ConfigureSuccess"] = "ConfigureSuccess"
    request_id: str
    keyterms: list[str] | None = None


class ConfigureFailure(BaseModel):
    type: Literal["ConfigureFailure"] = "ConfigureFailure"
    request_id: str
    code: Literal["CONFIGURE_KEYTERMS_NOT_SUPPORTED", "CONFIGURE_INTERNAL_ERROR"]
    description: str


Frame = Results | Metadata | SpeechStarted | UtteranceEnd | ConfigureSuccess | ConfigureFailure


class Utterance(BaseModel):
    start: float
    end: float
    confidence: float
    channel: int = 0
    transcript: str
    words: list[Word]
    speaker: int = 0
    id: str


class PrerecordedChannel(BaseModel):
    alternatives: list[Alternative]


class PrerecordedResults(BaseModel):
    channels: list[PrerecordedChannel]
    utterances: list[Utterance] | None = None


class PrerecordedResponse(BaseModel):
    metadata: PrerecordedMetadata
    results: PrerecordedResults


def utc_now() -> str:
    """Deepgram's `created`: ISO 8601 UTC with milliseconds and a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
