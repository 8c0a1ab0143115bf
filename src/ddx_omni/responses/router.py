"""Routes of the Responses and Conversations APIs: parse, call the responses component, shape the answer.

Each route's `response_model` (responses/wire.py) documents its 200 in the OpenAPI document; the answer itself
is the service's dict sent as a JSONResponse, serialized once (a returned Response skips FastAPI's
re-validation; tests/responses/test_wire.py checks that real answers fit the models).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..core.openapi import SSE_RESPONSE
from ..core.paging import page_args
from .schemas import AddItemsRequest, CreateConversationRequest, CreateResponseRequest, UpdateConversationRequest
from .service import ResponsesService
from .wire import Conversation, ConversationDeleted, InputTokens, Item, ItemList, Response, ResponseDeleted

router = APIRouter(prefix="/v1", tags=["responses"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _service(request: Request) -> ResponsesService:
    return request.app.state.responses


@router.post("/responses", summary="Create a response (optionally streamed, chained, or in the background)",
             response_model=Response, responses=SSE_RESPONSE)
async def create_response(body: CreateResponseRequest, request: Request) -> StreamingResponse | JSONResponse:
    created = await _service(request).create(body, request.is_disconnected)
    if created.stream is not None:
        return StreamingResponse(created.stream, media_type="text/event-stream", headers=SSE_HEADERS)
    # Server-Timing: the engine's share and the gateway's own (what benchmarks/bench_responses.py reports)
    headers = {"Server-Timing": created.server_timing} if created.server_timing else None
    return JSONResponse(created.body, headers=headers)


@router.post("/responses/input_tokens", summary="Count the input tokens a response would have",
             response_model=InputTokens)
async def count_input_tokens(body: CreateResponseRequest, request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).count_input_tokens(body))


@router.get("/responses/{response_id}", summary="Retrieve a stored response, or stream a running background one",
            response_model=Response, responses=SSE_RESPONSE)
async def get_response(response_id: str, request: Request, stream: bool = False,
                       starting_after: int | None = None) -> StreamingResponse | JSONResponse:
    if stream:
        events = await _service(request).attach(response_id, starting_after)
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(await _service(request).get(response_id))


@router.delete("/responses/{response_id}", summary="Delete a stored response", response_model=ResponseDeleted)
async def delete_response(response_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).delete(response_id))


@router.post("/responses/{response_id}/cancel", summary="Cancel a background response", response_model=Response)
async def cancel_response(response_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).cancel(response_id))


@router.get("/responses/{response_id}/input_items", summary="List a response's input items",
            response_model=ItemList)
async def list_input_items(response_id: str, request: Request, after: str | None = None, limit: int = 20,
                           order: str = "desc") -> JSONResponse:
    return JSONResponse(await _service(request).input_items(response_id, after=after, **page_args(limit, order)))


@router.post("/conversations", summary="Create a conversation", response_model=Conversation)
async def create_conversation(body: CreateConversationRequest, request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).create_conversation(body.items, body.metadata))


@router.get("/conversations/{conversation_id}", summary="Retrieve a conversation", response_model=Conversation)
async def get_conversation(conversation_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).conversation(conversation_id))


@router.post("/conversations/{conversation_id}", summary="Update a conversation's metadata",
             response_model=Conversation)
async def update_conversation(conversation_id: str, body: UpdateConversationRequest,
                              request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).update_conversation(conversation_id, body.metadata))


@router.delete("/conversations/{conversation_id}", summary="Delete a conversation",
               response_model=ConversationDeleted)
async def delete_conversation(conversation_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).delete_conversation(conversation_id))


@router.post("/conversations/{conversation_id}/items", summary="Add items (at most 20) to a conversation",
             response_model=ItemList)
async def add_items(conversation_id: str, body: AddItemsRequest, request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).add_items(conversation_id, body.items))


@router.get("/conversations/{conversation_id}/items", summary="List a conversation's items", response_model=ItemList)
async def list_items(conversation_id: str, request: Request, after: str | None = None, limit: int = 20,
                     order: str = "desc") -> JSONResponse:
    return JSONResponse(await _service(request).list_items(conversation_id, after=after, **page_args(limit, order)))


@router.get("/conversations/{conversation_id}/items/{item_id}", summary="Retrieve a conversation item",
            response_model=Item)
async def get_item(conversation_id: str, item_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).item(conversation_id, item_id))


@router.delete("/conversations/{conversation_id}/items/{item_id}",
               summary="Delete a conversation item (answers with the conversation, as OpenAI does)",
               response_model=Conversation)
async def delete_item(conversation_id: str, item_id: str, request: Request) -> JSONResponse:
    return JSONResponse(await _service(request).delete_item(conversation_id, item_id))
