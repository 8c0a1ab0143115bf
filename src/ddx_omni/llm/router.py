"""Chat routes: the model registry, hot swap, and OpenAI chat completions (JSON or SSE)."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic_core import to_json

from ..core.disconnect import unless_disconnected
from ..core.errors import ApiError, LlmError, RequestInvalid, error_body
from ..core.openapi import SSE_RESPONSE
from ..core.settings import ModelExtras
from .engine import ChatDelta, ChatParams, Usage
from .prompt import prepare_prompt
from .schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    ChunkDelta,
    CurrentModel,
    LoadRequest,
    LoadResult,
    ModelCard,
    ModelList,
    UsageOut,
)
from .service import LlmService

log = logging.getLogger("ddx_omni.llm")
public_router = APIRouter(tags=["chat"])
router = APIRouter(tags=["chat"])


def _service(request: Request) -> LlmService:
    return request.app.state.llm


@public_router.get("/v1/models", summary="The model registry (OpenAI list + registry extras)")
def list_models(request: Request) -> ModelList:
    service = _service(request)
    shown = {"id", *ModelExtras.model_fields}  # never the path, nor an upstream's URL or key
    cards = [ModelCard(created=service.created, **entry.model_dump(include=shown))
             for entry in service.registry.values()]
    return ModelList(data=cards)


@public_router.get("/v1/models/current", summary="The model that answers, and whether it is loaded")
def current_model(request: Request) -> CurrentModel:
    service = _service(request)
    return CurrentModel(model_id=service.model_id, loaded=service.loaded, last_load_ms=service.last_load_ms)


@router.post("/v1/models/load", summary="Hot swap: release the current model, load another")
async def load_model(body: LoadRequest, request: Request) -> LoadResult:
    return LoadResult(**await _service(request).load(body.model_id))


# -- chat completions -----------------------------------------------------------------------------------------


def to_params(req: ChatCompletionRequest) -> ChatParams:
    """Map a request to ChatParams, refusing what the engines do not do (the rest is checked by the prompt
    pipeline, llm/prompt.py)."""
    if (req.n or 1) > 1:
        raise RequestInvalid("n > 1 is not supported: ask for one choice per request", param="n")
    for i, message in enumerate(req.messages):
        parts = message.content if isinstance(message.content, list) else []
        if any(not isinstance(part, dict) or part.get("type") not in ("text", "image_url") for part in parts):
            raise RequestInvalid("Only text and image_url content parts are supported", param=f"messages.{i}.content")
    try:
        bias = {int(k): float(v) for k, v in (req.logit_bias or {}).items()}
    except ValueError:
        raise RequestInvalid("logit_bias keys must be token ids", param="logit_bias") from None
    return ChatParams(
        messages=[m.model_dump(exclude_none=True) for m in req.messages],
        tools=[t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None,
        tool_choice=req.tool_choice, max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=req.temperature, top_p=req.top_p, top_k=req.top_k, min_p=req.min_p, seed=req.seed,
        stop=list(req.stop or []), presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        repetition_penalty=req.repetition_penalty, logit_bias=bias or None, logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs or 0, response_format=req.response_format)


def _usage_fields(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage(0, 0)
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens, "prompt_tokens_details": {"cached_tokens": usage.cached_tokens}}


def _usage(usage: Usage | None) -> UsageOut:
    return UsageOut.model_validate(_usage_fields(usage))


async def _complete(deltas: AsyncIterator[ChatDelta], first: ChatDelta, head: dict[str, Any]) -> bytes:
    """The whole completion, as the JSON of a ChatCompletion (tests/llm/test_mock_script.py checks it is one)."""
    text, reasoning, calls, logprobs, last = [], [], [], [], first
    delta: ChatDelta | None = first
    while delta is not None:
        text.append(delta.text)
        reasoning.append(delta.reasoning)
        calls.extend(delta.tool_calls)
        logprobs.extend(delta.logprobs or [])
        last = delta
        delta = await anext(deltas, None)
    content = "".join(text)
    message: dict[str, Any] = {
        "role": "assistant", "content": None if calls and not content.strip() else content,
        "tool_calls": [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                       for c in calls] or None}
    if any(reasoning):  # an extra field (AssistantMessage allows them), present only when there is some
        message["reasoning_content"] = "".join(reasoning)
    choice = {"index": 0, "message": message, "logprobs": {"content": logprobs} if logprobs else None,
              "finish_reason": last.finish_reason or "stop"}
    # ChatCompletion's fields in its order, serialized as they are: building the models (or validating this tree)
    # and then dumping them cost ~10 % of a mock request (BENCHMARKS.md, per-request overhead).
    return to_json({"id": head["id"], "object": "chat.completion", **head, "choices": [choice],
                    "usage": _usage_fields(last.usage), "system_fingerprint": None})


async def _answer(deltas: AsyncIterator[ChatDelta], head: dict[str, Any], stream: bool) -> ChatDelta | bytes:
    """Streaming: the first delta (the prompt is processed). Otherwise: the whole completion, serialized."""
    first = await anext(deltas, None)
    if first is None:
        raise LlmError("The engine ended without an answer")
    return first if stream else await _complete(deltas, first, head)


def _sse(chunk: ChatCompletionChunk | dict[str, Any]) -> str:
    body = chunk if isinstance(chunk, dict) else chunk.model_dump(exclude_none=True)
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _chunks(delta: ChatDelta, head: dict[str, Any], calls_sent: int) -> list[dict[str, Any]]:
    """The chunks of one delta, as plain dicts: this runs once per token, so it skips model validation."""
    base = {**head, "object": "chat.completion.chunk"}
    chunks: list[dict[str, Any]] = []
    if delta.reasoning:
        chunks.append({**base, "choices": [{"index": 0, "delta": {"reasoning_content": delta.reasoning}}]})
    if delta.text or delta.logprobs:
        choice: dict[str, Any] = {"index": 0, "delta": {"content": delta.text}}
        if delta.logprobs:
            choice["logprobs"] = {"content": delta.logprobs}
        chunks.append({**base, "choices": [choice]})
    for i, call in enumerate(delta.tool_calls):
        tool = {"index": calls_sent + i, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}}
        chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [tool]}}]})
    if delta.finish_reason:
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": delta.finish_reason}]})
    return chunks


async def _stream(deltas: AsyncIterator[ChatDelta], first: ChatDelta, head: dict[str, Any], path: str,
                  include_usage: bool) -> AsyncIterator[str]:
    """SSE body. Starlette cancels this generator when the client disconnects; closing `deltas` then stops
    the generation at its next token."""
    calls_sent, usage = 0, None
    try:
        yield _sse(ChatCompletionChunk(**head, choices=[ChunkChoice(delta=ChunkDelta(role="assistant",
                                                                                     content=""))]))
        delta: ChatDelta | None = first
        while delta is not None:
            for chunk in _chunks(delta, head, calls_sent):
                yield _sse(chunk)
            calls_sent += len(delta.tool_calls)
            usage = delta.usage or usage
            delta = await anext(deltas, None)
        if include_usage:
            yield _sse(ChatCompletionChunk(**head, choices=[], usage=_usage(usage)))
    except ApiError as exc:  # the headers are gone: report in-band, as OpenAI does
        yield _sse(error_body(path, exc.status, exc.code, exc.message, exc.detail, exc.param))
    except Exception:
        log.exception("chat stream failed")
        yield _sse(error_body(path, 500, "llm_error", "Internal server error"))
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
    yield "data: [DONE]\n\n"


@router.post("/v1/chat/completions", summary="OpenAI chat completions (stream: true → SSE)",
             response_model=ChatCompletion, responses=SSE_RESPONSE)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> ChatCompletion | Response:
    service = _service(request)
    params = to_params(body)
    engine = await service.engine(body.model)
    await service.images.prepare(engine.model_id, params, param="messages")
    await prepare_prompt(engine, params, service.settings.llm.default_max_tokens)
    head = {"id": f"chatcmpl-{secrets.token_hex(16)}", "created": int(time.time()), "model": engine.model_id}
    deltas = engine.stream(params)
    # Streaming too waits for the first token before the status line, so that errors are real HTTP errors.
    try:
        answer = await unless_disconnected(request, _answer(deltas, head, body.stream))
    finally:
        if not body.stream:
            await deltas.aclose()  # type: ignore[attr-defined]
    if answer is None:
        await deltas.aclose()  # type: ignore[attr-defined]
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it
    if isinstance(answer, bytes):
        return Response(answer, media_type="application/json")
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(_stream(deltas, answer, head, request.url.path, include_usage),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"})
