"""One live WebSocket session: the Deepgram protocol state machine (frames out, control in, close codes).

Two coroutines per session: the receiver (reads frames, enforces the idle timeout, parses control) and the
worker (feeds audio to the Transcriber on the engine's executor, in order, and sends the frames it yields).
Nothing blocking runs on the event loop, so one slow session never delays another's frames.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
import uuid
from typing import Any, Literal

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..core.metrics import STT_AUDIO_SECONDS, STT_FINAL_LATENCY, STT_SESSIONS, STT_SESSIONS_ACTIVE
from .audio import UnsupportedAudio
from .engines import AsrEngine
from .options import ListenRefused, check_language, parse_options
from .schemas import Control, Frame, ListenOptions, Results
from .service import ENGINE_WAIT_S, SttService
from .transcriber import Transcriber

log = logging.getLogger("ddx_omni.stt.session")

# Frames waiting for the worker (~16 s of 64 ms frames): a client sending faster than the engine decodes is
# slowed down by TCP backpressure instead of growing the server's memory.
QUEUE_FRAMES = 256

Item = tuple[Literal["audio", "finalize", "configure", "close"], Any, float]


class Session:
    def __init__(self, websocket: WebSocket, service: SttService, engine: AsrEngine, options: ListenOptions) -> None:
        self.ws = websocket
        self.service = service
        self.engine = engine
        self.options = options
        # the id of the upgrade request (core.gateway): frames and log lines of one session share it
        self.request_id: str = websocket.scope.get("state", {}).get("request_id") or str(uuid.uuid4())
        self.close_code: int | None = None
        self._queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_FRAMES)
        self._transcriber: Transcriber | None = None
        self._worker: asyncio.Task[None] | None = None
        self._inflight: concurrent.futures.Future[Any] | None = None

    async def _in_executor(self, fn: Any, *args: Any) -> Any:
        # kept: a cancelled await does not stop a running job, and cleanup must not race it
        self._inflight = self.engine.executor.submit(fn, *args)
        return await asyncio.wrap_future(self._inflight)

    async def run(self) -> None:
        STT_SESSIONS_ACTIVE.inc()
        self.service.sessions.add(self)
        try:
            self._transcriber = await self._in_executor(Transcriber, self.engine, self.options,
                                                        self.service.settings, self.request_id)
            await self._send([self._transcriber.metadata()])
            self._worker = asyncio.create_task(self._work())
            await self._receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.close_code = self.close_code or 1006  # the client went away mid-send
        finally:
            await self._cleanup()

    async def _cleanup(self) -> None:
        self.service.sessions.discard(self)
        STT_SESSIONS_ACTIVE.dec()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._inflight is not None:  # let a job already running on the stream finish before releasing it
            await asyncio.gather(asyncio.wrap_future(self._inflight), return_exceptions=True)
        if self._transcriber is not None and self.close_code != 1000:
            self._transcriber.abort()  # cheap (closes a pipe, returns a decoder); the executor may be shut down
        STT_SESSIONS.labels(self.engine.name, str(self.close_code or 1005)).inc()

    async def _receive(self) -> None:
        idle = self.service.settings.idle_timeout_s
        assert self._worker is not None
        while True:
            receive = asyncio.ensure_future(self.ws.receive())
            done, _ = await asyncio.wait({receive, self._worker}, timeout=idle,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                # a frame that arrived in the same loop turn as the timer is not lost to the cancel below
                done, _ = await asyncio.wait({receive}, timeout=0.05)
            if receive not in done:
                receive.cancel()
                await asyncio.gather(receive, return_exceptions=True)
                if not self._worker.done():  # neither audio nor KeepAlive for `idle` seconds
                    await self.close(1011, "NET-0001")
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                self.close_code = self.close_code or message.get("code", 1005)
                return
            if message.get("bytes") is not None:
                # an empty frame is a no-op (some clients send one to mean "end")
                if message["bytes"] and not await self._enqueue(("audio", message["bytes"], time.perf_counter())):
                    return
                continue
            if not await self._control(message.get("text") or ""):
                return

    async def _control(self, text: str) -> bool:
        """Handle a text frame; False when the receiver must stop."""
        try:
            control = Control.model_validate(json.loads(text))
        except (ValueError, ValidationError):
            await self.close(1008, "DATA-0000")
            return False
        if control.type == "KeepAlive":
            return True
        if control.type == "Finalize":
            return await self._enqueue(("finalize", b"", time.perf_counter()))
        if control.type == "Configure":
            return await self._enqueue(("configure", control, time.perf_counter()))
        if await self._enqueue(("close", b"", time.perf_counter())):
            assert self._worker is not None
            await asyncio.gather(self._worker, return_exceptions=True)
        return False

    async def _enqueue(self, item: Item) -> bool:
        """Queue for the worker, waiting while the queue is full; False if the worker has stopped."""
        assert self._worker is not None
        put = asyncio.ensure_future(self._queue.put(item))
        await asyncio.wait({put, self._worker}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            return False
        return True

    async def _work(self) -> None:
        assert self._transcriber is not None
        transcriber = self._transcriber
        while True:
            kind, data, received = await self._queue.get()
            before = transcriber.duration
            try:
                if kind == "audio":
                    frames = await self._in_executor(transcriber.feed, data)
                elif kind == "finalize":
                    frames = await self._in_executor(transcriber.finalize)
                elif kind == "configure":
                    frames = await self._in_executor(transcriber.configure, data)
                else:
                    frames = await self._in_executor(transcriber.close)
            except UnsupportedAudio as exc:
                log.info("session %s: undecodable audio (%s)", self.request_id, exc)
                await self.close(1003, "unsupported-data")
                return
            except Exception:
                log.exception("session %s: transcription failed", self.request_id)
                await self.close(1011, "internal-error")
                return
            STT_AUDIO_SECONDS.labels(self.engine.name).inc(max(transcriber.duration - before, 0.0))
            await self._send(frames)
            if any(isinstance(f, Results) and f.is_final for f in frames):
                STT_FINAL_LATENCY.labels(self.engine.name).observe(time.perf_counter() - received)
            if kind == "close":
                await self._send([transcriber.metadata()])
                await self.close(1000, "")
                return

    async def _send(self, frames: list[Frame]) -> None:
        for frame in frames:
            await self.ws.send_text(frame.model_dump_json())

    async def close(self, code: int, reason: str) -> None:
        if self.close_code is not None:
            return
        self.close_code = code
        if self.ws.application_state == WebSocketState.CONNECTED:
            try:
                await self.ws.close(code, reason)
            except (RuntimeError, OSError):
                pass

    async def going_away(self) -> None:
        """Server shutdown: close 1001 and stop the worker."""
        await self.close(1001, "going away")
        if self._worker is not None:
            self._worker.cancel()


async def serve_live(websocket: WebSocket, service: SttService) -> None:
    """After accept: validate the request, then run the session; refusals close with their code."""
    settings = service.settings
    try:
        options = parse_options(dict(websocket.query_params), settings)
        if len(service.sessions) >= settings.max_sessions:
            raise ListenRefused(1013, "too-many-sessions")
        engine = await service.wait_ready(ENGINE_WAIT_S)
        if engine is None:
            raise ListenRefused(1011, f"engine-unavailable: {service.state}")
        check_language(engine, options.language)
    except ListenRefused as refused:
        await websocket.close(refused.close_code, refused.reason)
        STT_SESSIONS.labels(service.settings.engine, str(refused.close_code)).inc()
        return
    await Session(websocket, service, engine, options).run()
