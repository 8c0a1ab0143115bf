"""The stt component: loads the engine off the loop at start, transcribes whole files, counts live sessions."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ..core.errors import ModelUnavailable, api_error
from ..core.settings import Settings, SttSettings
from .audio import UnsupportedAudio
from .engines import AsrEngine, load_engine
from .options import ListenRefused, check_language, parse_options
from .schemas import PrerecordedResponse
from .transcriber import transcribe_file

ENGINE_WAIT_S = 30.0  # a request arriving while the engine loads waits this long before 503 / close 1011

log = logging.getLogger("ddx_omni.stt")


class LiveSession(Protocol):
    async def going_away(self) -> None: ...


class SttService:
    name = "stt"

    def __init__(self, settings: SttSettings) -> None:
        self.settings = settings
        self.engine: AsrEngine | None = None
        self.error: str | None = None
        self.sessions: set[LiveSession] = set()
        self._load: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        if self.engine is not None:
            return "ready"
        return "failed" if self.error else "loading"

    async def start(self) -> None:
        # Loading parakeet weights takes seconds: the server answers (health says "loading") meanwhile.
        self._load = asyncio.create_task(self._load_engine())

    async def _load_engine(self) -> None:
        try:
            self.engine = await asyncio.to_thread(load_engine, self.settings)
            log.info("stt engine ready: %s (%s)", self.engine.name, self.engine.model)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("stt engine %s failed to load: %s", self.settings.engine, self.error)

    async def wait_ready(self, timeout: float) -> AsrEngine | None:
        if self._load is not None and not self._load.done():
            await asyncio.wait({self._load}, timeout=timeout)
        return self.engine

    async def transcribe(self, query: dict[str, str], audio: bytes, request_id: str) -> PrerecordedResponse:
        """A whole file → Deepgram's pre-recorded JSON, decoded and transcribed on the engine's executor.
        Bad options or audio raise ApiError 400 (the live protocol's reason as the message)."""
        try:
            options = parse_options(query, self.settings)
            engine = await self.wait_ready(ENGINE_WAIT_S)
            if engine is None:
                raise ModelUnavailable(f"speech engine {self.state}", self.error)
            check_language(engine, options.language)
        except ListenRefused as refused:
            raise api_error("bad_request", refused.reason) from None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(engine.executor, transcribe_file, engine, options, self.settings,
                                              request_id, audio)
        except UnsupportedAudio as exc:
            raise api_error("unsupported_data", "unsupported-data",
                            detail=f"the body could not be decoded: {exc}") from None

    async def going_away(self) -> None:
        """Called by `serve` on SIGTERM before uvicorn closes every socket (with 1012): end live sessions with 1001."""
        await asyncio.gather(*(session.going_away() for session in list(self.sessions)), return_exceptions=True)

    async def stop(self) -> None:
        await self.going_away()
        if self._load is not None and not self._load.done():
            self._load.cancel()
        if self.engine is not None:
            self.engine.close()

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "state": self.state,
            "engine": self.engine.name if self.engine else self.settings.engine,
            "model": self.engine.model if self.engine else None,
            "sessions": len(self.sessions),
        }
        if self.error:
            body["error"] = self.error
        return body


def create_service(settings: Settings) -> SttService:
    return SttService(settings.stt)
