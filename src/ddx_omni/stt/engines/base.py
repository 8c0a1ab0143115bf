"""The engine protocol: an `AsrEngine` opens one `AsrStream` per session; streams turn 16 kHz audio into words."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..audio import SAMPLE_RATE

__all__ = ["SAMPLE_RATE"]  # the engines' input rate, re-exported for them


@dataclass(frozen=True)
class RecognizedWord:
    """A word of the current segment; times are seconds from the segment's first sample."""

    text: str  # as the engine writes it (parakeet: cased and punctuated; sphinx: lower case)
    start: float
    end: float
    confidence: float


class AsrStream(Protocol):
    """One session's recogniser state. Called from one thread at a time (the engine's executor)."""

    def accept(self, samples: np.ndarray) -> None:
        """Add 16 kHz mono float32 audio to the current segment."""

    def partial(self) -> list[RecognizedWord]:
        """The current segment's best guess so far (for interim Results)."""

    def finish(self) -> list[RecognizedWord]:
        """End the segment: its final words. The next `accept` starts a new segment at time 0."""

    def close(self) -> None:
        """Release what the stream holds."""


class AsrEngine(Protocol):
    name: str  # "sphinx" | "parakeet"
    model: str  # what /health and Metadata.model_info name
    version: str
    arch: str

    @property
    def executor(self) -> Executor:
        """Where this engine's work must run (MLX: one dedicated thread)."""
        ...

    def supports_language(self, language: str) -> bool: ...

    def open_stream(self) -> AsrStream: ...

    def close(self) -> None: ...


def base_language(language: str) -> str:
    """`en-US` → `en`."""
    return language.lower().replace("_", "-").split("-")[0]
