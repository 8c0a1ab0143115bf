"""The LLM component: which engine answers (mock or MLX), its load state, and hot swap."""

from __future__ import annotations

from typing import Any

from ..core.errors import ModelNotFound
from ..core.settings import Settings
from .engine import ChatEngine
from .mock import MockEngine


class LlmService:
    name = "llm"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_id = settings.llm.model

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"state": "ready", "mode": "mock", "model": self.model_id, "model_state": "ready",
                "model_load_elapsed_ms": 0, "model_error": None}

    async def engine(self, model_id: str | None = None) -> ChatEngine:
        return MockEngine(model_id or self.model_id)

    async def load(self, model_id: str) -> dict[str, Any]:
        raise ModelNotFound(f"Cannot load {model_id}", "server not in real-model mode")


def create_service(settings: Settings) -> LlmService:
    return LlmService(settings)
