"""The LLM component: which engine answers (mock or MLX), the registry, background loading and hot swap."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from ..core.errors import ModelNotFound, ModelUnavailable
from ..core.settings import ModelEntry, Settings, load_mock_script
from .compute import process_compute
from .engine import ChatEngine
from .images import ImageInput
from .mlx_engine import EngineOptions, MlxEngine
from .mock import MockEngine
from .registry import build_registry, resolve
from .upstream import UpstreamEngine
from .vision import VisionEngine

log = logging.getLogger("ddx_omni.llm")


class LlmService:
    name = "llm"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.real = settings.llm.use_real_model
        self.registry: dict[str, ModelEntry] = build_registry(settings.llm)
        self.created = int(time.time())
        self.model_id = (resolve(self.registry, settings.llm.model) or ModelEntry(id=settings.llm.model)).id
        self.model_state = "loading" if self.real else "ready"
        self.model_error: str | None = None
        self.last_load_ms: int | None = None if self.real else 0
        self._engine: MlxEngine | VisionEngine | None = None
        self.images = ImageInput(settings.vision, self.registry)  # image parts → decoded images, or a clear 400
        self._swap_lock = asyncio.Lock()
        self._settled = asyncio.Event()  # set whenever no load is in progress (loaded or failed)
        self._load_task: asyncio.Task[Any] | None = None
        self._load_started = time.monotonic()
        self._compute: dict[str, Any] | None = None  # the process's MLX device and BLAS, once real mode starts
        self._idle_task: asyncio.Task[Any] | None = None
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(settings.llm.upstream_read_timeout_s,
                                                             connect=settings.llm.upstream_connect_timeout_s))
        self.upstreams = {entry.id: UpstreamEngine(entry, settings.llm, self._http)
                          for entry in self.registry.values() if entry.url}
        script = settings.llm.mock_script
        self._mock_rules = load_mock_script(script) if script is not None and not self.real else []

    @property
    def mode(self) -> str:
        return "real" if self.real else "mock"

    async def start(self) -> None:
        if not self.real or self.model_id in self.upstreams:  # nothing to load here
            self.model_state, self.last_load_ms = "ready", 0
            self._settled.set()
            return
        self._compute = await asyncio.to_thread(process_compute)  # imports MLX: off the loop
        log.info("MLX computes on the %s with %s BLAS (%s)", self._compute["backend"], self._compute["blas"],
                 self._compute["blas_path"] or "-")
        # In the background: /health answers `loading` meanwhile, requests wait for it (bounded).
        self._load_task = asyncio.create_task(self._swap_to(self.registry[self.model_id]))
        if self.settings.llm.idle_unload_s > 0:
            self._idle_task = asyncio.create_task(self._unload_when_idle(self.settings.llm.idle_unload_s))

    async def stop(self) -> None:
        await self._http.aclose()
        await self.images.aclose()
        for task in (self._load_task, self._idle_task):
            if task is not None and not task.done():
                task.cancel()
        async with self._swap_lock:
            if self._engine is not None:
                await self._engine.close(drain_s=0)
                self._engine = None

    def health(self) -> dict[str, Any]:
        # `unloaded` (idle_unload_s) is ready: the next request loads the model again
        state = {"ready": "ready", "loading": "loading", "unloaded": "ready"}.get(self.model_state, "failed")
        elapsed = (self.last_load_ms if self.model_state != "loading"
                   else int((time.monotonic() - self._load_started) * 1000))
        extra: dict[str, Any] = {"mock_script": str(self.settings.llm.mock_script)} if self._mock_rules else {}
        if self.upstreams:
            extra["upstreams"] = {model: engine.health() for model, engine in self.upstreams.items()}
        return {"state": state, "mode": self.mode, **extra, "model": self.model_id, "model_state": self.model_state,
                "model_load_elapsed_ms": elapsed, "model_error": self.model_error, "compute": self._compute_health()}

    def _compute_health(self) -> dict[str, Any] | None:
        """`llm.compute`: MLX's device, the BLAS behind it, the dtype the model computes in (real mode only)."""
        if self._compute is None:
            return None
        engine = self._engine
        # the vision engine (mlx-vlm) neither casts nor batches: it has no `compute` nor `scheduler`
        loaded = getattr(engine, "compute", None) or {}
        scheduler = getattr(engine, "scheduler", None)
        batch = {"max_batch_size": scheduler.max_batch_size, "active": scheduler.active} if scheduler else None
        return {**self._compute, "dtype": loaded.get("dtype"), "checkpoint_dtype": loaded.get("checkpoint_dtype"),
                "batch": batch}

    @property
    def loaded(self) -> bool:
        return not self.real or (self._engine is not None and self.model_state == "ready")

    async def engine(self, model_id: str | None = None) -> ChatEngine:
        entry = resolve(self.registry, model_id or self.model_id)
        if entry is not None and entry.id in self.upstreams:  # served elsewhere, in either mode
            return self.upstreams[entry.id]
        if not self.real:
            return MockEngine(model_id or self.model_id, self._mock_rules)
        # Any registered id is answered by the loaded model (the response's `model` says which): swapping is
        # POST /v1/models/load's job, so that clients with a hard-coded model name cannot undo an operator's swap.
        if model_id is not None:
            self._registered(model_id, param="model")
        await self._wait_settled()
        if self._engine is None and self.model_state == "unloaded":  # unloaded while idle: load it again
            await self._reload()
        if self._engine is None:
            raise ModelUnavailable(f"Model {self.model_id} is not available", self.model_error)
        self._engine.last_used = time.monotonic()  # handed out: the idle unloader leaves it alone for now
        return self._engine

    async def _reload(self) -> None:
        if self._settled.is_set():  # the first request after the unload starts the load; the others wait for it
            self._settled.clear()
            self.model_state = "loading"
            self._load_task = asyncio.create_task(self._swap_to(self.registry[self.model_id]))
        await self._wait_settled()

    async def _wait_settled(self) -> None:
        """Wait (bounded by load_wait_s) until no load is in progress."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout=self.settings.llm.load_wait_s)
        except TimeoutError:
            raise ModelUnavailable(f"Model {self.model_id} is still loading",
                                   f"waited {self.settings.llm.load_wait_s:g} s; retry later") from None

    async def _unload_when_idle(self, idle_s: float) -> None:
        """`[llm].idle_unload_s`: free the model once nobody has used it for that long (the next request reloads)."""
        while True:
            await asyncio.sleep(min(idle_s / 4, 5.0))
            engine = self._engine
            if engine is None or engine.busy or time.monotonic() - engine.last_used < idle_s:
                continue
            async with self._swap_lock:
                if self._engine is not engine or engine.busy:
                    continue
                self._engine, self.model_state = None, "unloaded"
                await engine.close(drain_s=0)
                log.info("model %s unloaded after %g s unused (idle_unload_s)", self.model_id, idle_s)

    async def load(self, model_id: str) -> dict[str, Any]:
        if not self.real:
            raise ModelNotFound(f"Cannot load {model_id}", "server not in real-model mode", param="model_id")
        entry = self._registered(model_id, param="model_id")
        async with self._swap_lock:
            if entry.id == self.model_id and self._engine is not None:
                return {"swapped": False, "load_ms": 0, "loaded": entry.id}
            await self._swap_locked(entry)
        if self._engine is None:
            raise ModelUnavailable(f"Model {entry.id} could not be loaded", self.model_error)
        return {"swapped": True, "load_ms": self.last_load_ms or 0, "loaded": entry.id}

    def _registered(self, model_id: str, param: str) -> ModelEntry:
        entry = resolve(self.registry, model_id)
        if entry is None:
            raise ModelNotFound(f"Model '{model_id}' is not in the registry",
                                "GET /v1/models lists the ids this server knows", param=param)
        return entry

    async def _swap_to(self, entry: ModelEntry) -> None:
        async with self._swap_lock:
            await self._swap_locked(entry)

    async def _swap_locked(self, entry: ModelEntry) -> None:
        """Release the old model (drain, fail leftovers, clear MLX's cache), then load the new one."""
        self._settled.clear()
        self.model_id, self.model_state, self.model_error = entry.id, "loading", None
        self._load_started = time.monotonic()
        old, self._engine = self._engine, None
        if old is not None:
            await old.close(drain_s=self.settings.llm.swap_drain_s)
        start = time.perf_counter()
        try:
            # a vision-language checkpoint (config.json has a vision_config: `multimodal`) runs on mlx-vlm
            engine_class = VisionEngine if entry.multimodal else MlxEngine
            self._engine = await engine_class.load(entry.id, entry.path or entry.id,
                                                   context_window=entry.context_window, options=self._options())
            self.model_state = "ready"
        except asyncio.CancelledError:
            self.model_state, self.model_error = "failed", "loading was cancelled"
            raise
        except Exception as exc:
            log.error("loading model %s from %s failed: %s", entry.id, entry.path or entry.id, exc)
            self.model_state, self.model_error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self.last_load_ms = int((time.perf_counter() - start) * 1000)
            self._settled.set()


    def _options(self) -> EngineOptions:
        llm = self.settings.llm
        return EngineOptions(prefill_step_size=llm.prefill_step_size, default_temperature=llm.default_temperature,
                             default_max_tokens=llm.default_max_tokens, max_batch_size=llm.max_batch_size,
                             prompt_cache_bytes=llm.prompt_cache_bytes, cpu_dtype=llm.cpu_dtype)


def create_service(settings: Settings) -> LlmService:
    return LlmService(settings)
