"""Speech routes: WS /v1/listen/dg and /v1/listen (live, Deepgram protocol) and POST /v1/listen (pre-recorded)."""

from __future__ import annotations

from fastapi import APIRouter, Request, WebSocket

from ..core.auth import authenticate_websocket
from ..core.errors import api_error
from .schemas import PrerecordedResponse
from .service import SttService
from .session import serve_live

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
    if request.headers.get("content-type", "").startswith("application/json"):
        raise api_error("unsupported_source", "URL sources are not supported",
                        detail="send the audio bytes as the request body")
    audio = await request.body()
    if not audio:
        raise api_error("bad_request", "Empty request body", detail="send the audio as the body")
    service: SttService = request.app.state.stt
    return await service.transcribe(dict(request.query_params), audio, request.state.request_id)
