"""Listen options: the query parameters of live and pre-recorded requests, checked against settings and engine.

`ListenRefused` carries the reason and the close code the live protocol uses for it (a live session also
refuses with it when the server is full or the engine is down); HTTP routes answer 400 with the same reason.
"""

from __future__ import annotations

from pydantic import ValidationError

from ..core.settings import SttSettings
from .engines import AsrEngine
from .schemas import SUPPORTED_ENCODINGS, ListenOptions


class ListenRefused(Exception):
    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code, self.reason = close_code, reason[:120]  # a WebSocket close reason fits 123 bytes


def parse_options(query: dict[str, str], settings: SttSettings) -> ListenOptions:
    """Query → options, enforcing encodings and caps. Language is checked against the engine later."""
    try:
        options = ListenOptions.model_validate(query)
    except ValidationError as exc:
        fields = ",".join(str(err["loc"][0]) for err in exc.errors() if err["loc"])
        raise ListenRefused(1008, f"DATA-0000 invalid query parameter: {fields}") from None
    if options.encoding is not None and options.encoding not in SUPPORTED_ENCODINGS:
        raise ListenRefused(1003, f"unsupported-encoding: {options.encoding}")
    if options.channels > settings.audio_max_channels:
        raise ListenRefused(1008, "channels-too-many")
    if options.sample_rate is not None and options.sample_rate > settings.audio_max_sample_rate:
        raise ListenRefused(1008, "sample-rate-too-high")
    return options


def check_language(engine: AsrEngine, language: str) -> None:
    if not engine.supports_language(language):
        raise ListenRefused(1003, f"unsupported-language: {language} (engine {engine.name})")
