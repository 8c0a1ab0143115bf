"""Anthropic routes: /v1/messages, /v1/messages/count_tokens (also under /anthropic), /anthropic/v1/models."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..core.disconnect import unless_disconnected
from ..core.errors import NotFound
from ..core.openapi import SSE_RESPONSE
from .events import Event
from .protocol import CountTokensRequest, Message, MessagesRequest, ModelInfo, ModelPage, TokenCount
from .service import MessagesService

router = APIRouter(tags=["anthropic"])
public_router = APIRouter(tags=["anthropic"])
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _service(request: Request) -> MessagesService:
    return request.app.state.anthropic


def _ids(request: Request) -> dict[str, str]:
    # Anthropic's SDKs read the request id from `request-id` (this server's own header carries it too).
    return {"request-id": str(getattr(request.state, "request_id", ""))}


async def _sse(events: AsyncIterator[Event]) -> AsyncIterator[str]:
    # Both SDK generations drop frames without an `event:` line.
    async for event in events:
        yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def create_message(body: MessagesRequest, request: Request) -> Any:
    service = _service(request)
    prepared = await service.prepare(body)
    if body.stream:
        return StreamingResponse(_sse(service.stream(prepared)), media_type="text/event-stream",
                                 headers={**SSE_HEADERS, **_ids(request)})
    message = await unless_disconnected(request, service.create(prepared))
    if message is None:
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it
    return JSONResponse(message.model_dump(), headers=_ids(request))


async def count_tokens(body: CountTokensRequest, request: Request) -> TokenCount:
    return TokenCount(input_tokens=await _service(request).count_tokens(body))


for prefix in ("", "/anthropic"):
    router.add_api_route(f"{prefix}/v1/messages", create_message, methods=["POST"], response_model=Message,
                         responses=SSE_RESPONSE,
                         summary="Anthropic Messages (stream: true → SSE events)", include_in_schema=not prefix)
    router.add_api_route(f"{prefix}/v1/messages/count_tokens", count_tokens, methods=["POST"],
                         summary="Anthropic token count of a Messages request", include_in_schema=not prefix)


@public_router.get("/anthropic/v1/models", summary="The model registry in Anthropic's list shape")
def list_models(request: Request, limit: int = Query(20, ge=1, le=1000), after_id: str | None = None,
                before_id: str | None = None) -> ModelPage:
    return _service(request).models(limit, after_id, before_id)


@public_router.get("/anthropic/v1/models/{model_id:path}", summary="One model in Anthropic's shape")
def get_model(model_id: str, request: Request) -> ModelInfo:
    found = [m for m in _service(request).models(1000, None, None).data if m.id == model_id]
    if not found:
        raise NotFound(f"Model '{model_id}' is not in the registry", param="model_id")
    return found[0]
