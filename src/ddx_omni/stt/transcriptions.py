"""OpenAI's POST /v1/audio/transcriptions over the speech engines: a multipart file → json | text | srt | vtt |
verbose_json. The whole file goes through the pre-recorded path (VAD segments become Whisper's segments)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse

from ..core.errors import RequestInvalid
from .schemas import CONTAINER_ENCODINGS, PrerecordedResponse
from .service import SttService
from .transcription_schemas import (
    DurationUsage,
    Granularity,
    ResponseFormat,
    Transcription,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
)

router = APIRouter(tags=["speech"])
LANGUAGES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "pt": "portuguese",
             "nl": "dutch", "pl": "polish", "ru": "russian", "uk": "ukrainian", "ja": "japanese", "zh": "chinese"}


def _segments(result: PrerecordedResponse) -> list[TranscriptionSegment]:
    return [TranscriptionSegment(id=i, start=u.start, end=u.end, text=u.transcript,
                                 avg_logprob=round(math.log(max(u.confidence, 1e-6)), 4))
            for i, u in enumerate(result.results.utterances or [])]


def _verbose(result: PrerecordedResponse, language: str, granularities: list[str]) -> TranscriptionVerbose:
    words = [TranscriptionWord(word=w.punctuated_word, start=w.start, end=w.end)
             for w in result.results.channels[0].alternatives[0].words]
    return TranscriptionVerbose(language=LANGUAGES.get(language.split("-")[0], language),
                                duration=result.metadata.duration, text=_text(result),
                                segments=_segments(result) if "segment" in granularities else None,
                                words=words if "word" in granularities else None, usage=_usage(result))


def _text(result: PrerecordedResponse) -> str:
    return result.results.channels[0].alternatives[0].transcript


def _usage(result: PrerecordedResponse) -> DurationUsage:
    return DurationUsage(seconds=math.ceil(result.metadata.duration))


def _stamp(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


def subtitles(segments: list[TranscriptionSegment], vtt: bool) -> str:
    """SubRip (numbered cues, comma before milliseconds) or WebVTT (a header, a dot)."""
    cues = []
    for segment in segments:
        span = f"{_stamp(segment.start, '.' if vtt else ',')} --> {_stamp(segment.end, '.' if vtt else ',')}"
        cues.append(f"{span}\n{segment.text}\n" if vtt else f"{segment.id + 1}\n{span}\n{segment.text}\n")
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(cues)


def _shape(result: PrerecordedResponse, response_format: str, language: str, granularities: list[str]) -> Any:
    if response_format == "json":
        return Transcription(text=_text(result), usage=_usage(result))
    if response_format == "verbose_json":
        return _verbose(result, language, granularities or ["segment"])
    if response_format == "text":
        return PlainTextResponse(_text(result) + "\n")
    return PlainTextResponse(subtitles(_segments(result), vtt=response_format == "vtt"),
                             media_type="text/vtt" if response_format == "vtt" else "application/x-subrip")


def encoding_of(filename: str | None) -> str | None:
    """The container named by the file's extension (OpenAI's clients always send a named file); None: sniffed
    from the first bytes, and bytes with no container signature are read as 16 kHz linear16."""
    extension = (filename or "").rsplit(".", 1)[-1].lower() if "." in (filename or "") else ""
    extension = {"mpga": "mp3", "mpeg": "mp3", "oga": "ogg", "opus": "ogg"}.get(extension, extension)
    return extension if extension in CONTAINER_ENCODINGS else None


@router.post("/v1/audio/transcriptions", summary="OpenAI audio transcriptions (json, text, srt, vtt, verbose_json)",
             response_model=Transcription | TranscriptionVerbose)
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File()],
    # model, prompt and temperature are accepted as OpenAI's clients send them; the loaded engine answers
    # (see /health), and neither engine takes a text prompt or samples
    model: Annotated[str, Form()] = "",  # noqa: ARG001
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,  # noqa: ARG001
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float | None, Form()] = None,  # noqa: ARG001
    timestamp_granularities: Annotated[list[Granularity] | None, Form(alias="timestamp_granularities[]")] = None,
) -> Any:
    if timestamp_granularities and response_format != "verbose_json":
        raise RequestInvalid("timestamp_granularities needs response_format verbose_json",
                             param="timestamp_granularities")
    audio = await file.read()
    if not audio:
        raise RequestInvalid("The file is empty", param="file")
    query = {"language": language or "en", "punctuate": "true", "utterances": "true", "words": "true"}
    encoding = encoding_of(file.filename)
    if encoding is not None:
        query["encoding"] = encoding
    service: SttService = request.app.state.stt
    result = await service.transcribe(query, audio, request.state.request_id)
    return _shape(result, response_format, language or "en", list(timestamp_granularities or []))
