"""Assembles the service: settings → components → middleware → routers, on one FastAPI app."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from . import __version__
from .anthropic import router as anthropic_router
from .anthropic import service as anthropic_service
from .containers import router as containers_router
from .containers import service as containers_service
from .containers.service import ContainersService
from .core import health, metrics
from .core.auth import ProtectedRoutes, include_protected, warn_if_open
from .core.cors import CorsMiddleware
from .core.disconnect import HangUpWatch
from .core.errors import install_error_handlers
from .core.fastlane import FastLaneMiddleware, LaneOperations
from .core.gateway import MULTIPART_SLACK, GatewayMiddleware, HttpMetrics
from .core.health import Component
from .core.openapi import install_openapi
from .core.settings import Settings, load_settings
from .embeddings import router as embeddings_router
from .embeddings import service as embeddings_service
from .files import router as files_router
from .files import service as files_service
from .llm import completions as completions_router
from .llm import router as llm_router
from .llm import service as llm_service
from .llm.schemas import ChatCompletionRequest
from .responses import router as responses_router
from .responses import service as responses_service
from .stt import router as stt_router
from .stt import service as stt_service
from .stt import transcriptions as transcriptions_router
from .tools import web_search as web_search_tool
from .tools.base import ToolKind
from .tools.code_interpreter import CodeInterpreterKind
from .tools.file_search import FileSearchKind
from .tools.mcp import McpKind
from .web import router as web_router
from .web_search import service as web_search_service
from .web_search.service import WebSearchService

log = logging.getLogger("ddx_omni")


def build_tools(settings: Settings, web_search: WebSearchService, containers: ContainersService,
                files: files_service.FilesService) -> dict[str, ToolKind]:
    """The built-in Responses tool kinds, by the request tool `type` they serve (tools/base.py)."""
    kinds: dict[str, ToolKind] = {}
    kinds["file_search"] = FileSearchKind(files.vector_stores, settings.files)
    kinds["mcp"] = McpKind(settings.responses)
    kinds.update(web_search_tool.kinds(web_search))  # web_search, web_search_preview and their dated names
    kinds["code_interpreter"] = CodeInterpreterKind(containers)
    return kinds


def build_components(settings: Settings) -> dict[str, Component]:
    embeddings = embeddings_service.EmbeddingsService(settings)
    files = files_service.create_service(settings, embeddings)
    llm = llm_service.create_service(settings)
    llm.images.files = files  # Responses `input_image` by file_id
    web_search = web_search_service.create_service(settings)
    containers = containers_service.create_service(settings, files)  # file_ids into containers
    tools = build_tools(settings, web_search, containers, files)
    return {
        "llm": llm,
        "stt": stt_service.create_service(settings),
        # before responses: started first, stopped after the turns that may still use them
        "web_search": web_search,
        "code_interpreter": containers,
        "embeddings": embeddings,
        "files": files,
        "responses": responses_service.create_service(settings, llm, tools,
                                                      responses_service.responses_database(settings)),
    }


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the components in order, stop the started ones in reverse (one failing stop stops no other)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warn_if_open(settings.server.host, settings.auth.api_keys)
        started: list[Component] = []
        try:
            for component in app.state.components.values():
                await component.start()
                started.append(component)
            yield
        finally:
            for component in reversed(started):
                try:
                    log.debug("stopping %s", component.name)
                    await component.stop()
                except Exception:  # one failing stop must not keep the others running
                    log.exception("stopping %s failed", component.name)

    return lifespan


def _include_routers(app: FastAPI) -> None:
    # The API routers first: FastAPI tries the routes in order, and these take nearly all the traffic. No path
    # is served by two routers, so the order changes nothing else.
    include_protected(app, llm_router.router)
    include_protected(app, responses_router.router)
    include_protected(app, anthropic_router.router)
    include_protected(app, completions_router.router)
    include_protected(app, embeddings_router.router)
    include_protected(app, files_router.router)
    include_protected(app, containers_router.router)
    include_protected(app, stt_router.http_router)
    include_protected(app, transcriptions_router.router)
    app.include_router(llm_router.public_router)
    app.include_router(anthropic_router.public_router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(web_router.router)
    app.include_router(stt_router.ws_router)  # WebSockets authenticate before accept (core.auth)


def create_app(settings: Settings | None = None, components: dict[str, Component] | None = None) -> FastAPI:
    settings = settings or load_settings()
    app = FastAPI(title="ddx-omni", version=__version__, lifespan=_lifespan(settings),
                  description="OpenAI-compatible chat over MLX, Deepgram-compatible live speech-to-text, "
                              "and the stateful OpenAI Responses API — one port, one key, one metrics endpoint.")
    app.state.settings = settings
    app.state.started_at = time.monotonic()
    app.state.components = components if components is not None else build_components(settings)
    for name, component in app.state.components.items():
        setattr(app.state, name, component)
    if "llm" in app.state.components:  # the Messages API is another wire format of the LLM component
        app.state.anthropic = anthropic_service.create_service(settings, app.state.components["llm"])

    app.state.hang_ups = HangUpWatch(poll_s=0.1)  # the clients of plain chat, completions, Messages requests
    app.state.protected_routes = protected = ProtectedRoutes()  # filled by include_protected below
    install_error_handlers(app)
    lane = LaneOperations()  # innermost of ours: CORS and the gateway layer see lane requests like any other
    lane.add(llm_router.router, "POST", "/v1/chat/completions", ChatCompletionRequest)
    app.add_middleware(FastLaneMiddleware, operations=lane)
    # Outermost last: the gateway layer wraps everything, so that even a 413 or a CORS preflight carries the id.
    app.add_middleware(CorsMiddleware, allow_origins=settings.server.cors_origins, allow_credentials=True,
                       allow_methods=["*"], allow_headers=["*"], expose_headers=[settings.server.request_id_header])
    app.add_middleware(GatewayMiddleware, header=settings.server.request_id_header,
                       max_bytes=settings.server.max_body_bytes, metrics=HttpMetrics(
                           metrics.HTTP_REQUESTS, metrics.HTTP_LATENCY, metrics.HTTP_IN_FLIGHT),
                       # an upload has its own cap, [files].max_bytes
                       routes=(("/v1/files", settings.files.max_bytes + MULTIPART_SLACK, "[files].max_bytes"),),
                       protected=protected, api_keys=settings.auth.api_keys)

    _include_routers(app)
    install_openapi(app, protected)
    return app
