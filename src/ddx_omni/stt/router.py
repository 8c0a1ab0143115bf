"""Speech routes: WS /v1/listen/dg and /v1/listen (live, Deepgram protocol) and POST /v1/listen (pre-recorded)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, WebSocket

from ..core.auth import authenticate_websocket
from ..core.errors import ApiError, ModelUnavailable
from .audio import UnsupportedAudio
from .schemas import PrerecordedResponse
from .service import SttService
from .session import ENGINE_WAIT_S, SessionRefused, check_language, parse_options, serve_live
from .transcriber import transcribe_file

http_router = APIRouter(tags=["speech"])
ws_router = APIRouter()


async def live(websocket: WebSocket) -> None:
    allowed, subprotocol = authenticate_websocket(websocket)
    if not allowed:
        await websocket.close(code=1008)  # before accept: the server answers the handshake with HTTP 403
        return
    await websocket.accept(subprotocol=subprotocol)
    await serve_live(websocket, websocket.app.state.stt)


# Every Deepgram SDK builds `<host>/v1/listen`; the prefixed form serves SDK v5+ `environment.production`
# values that carry a path (ws://host/stt → ws://host/stt/v1/listen).
for path in ("/v1/listen/dg", "/v1/listen", "/{prefix:path}/v1/listen"):
    ws_router.add_api_websocket_route(path, live)


@http_router.post("/v1/listen", response_model=PrerecordedResponse, response_model_exclude_none=True,
                  summary="Pre-recorded transcription (Deepgram-compatible): raw audio body, same query parameters")
@http_router.post("/{prefix:path}/v1/listen", response_model=PrerecordedResponse, response_model_exclude_none=True,
                  include_in_schema=False)  # SDK v5+ `environment.base` with a path prefix
async def listen_prerecorded(request: Request) -> PrerecordedResponse:
    service: SttService = request.app.state.stt
    if request.headers.get("content-type", "").startswith("application/json"):
        raise ApiError("URL sources are not supported", "send the audio bytes as the request body",
                       status=400, code="unsupported_source")
    try:
        options = parse_options(dict(request.query_params), service.settings)
    except SessionRefused as refused:
        raise ApiError(refused.reason, status=400, code="bad_request") from None
    audio = await request.body()
    if not audio:
        raise ApiError("Empty request body", "send the audio as the body", status=400, code="bad_request")
    engine = await service.wait_ready(ENGINE_WAIT_S)
    if engine is None:
        raise ModelUnavailable(f"speech engine {service.state}", service.error)
    try:
        check_language(engine, options.language)
    except SessionRefused as refused:
        raise ApiError(refused.reason, status=400, code="bad_request") from None
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(engine.executor, transcribe_file, engine, options, service.settings,
                                          request.state.request_id, audio)
    except UnsupportedAudio as exc:
        raise ApiError("unsupported-data", f"the body could not be decoded: {exc}", status=400,
                       code="unsupported_data") from None
