"""Legacy completions (POST /v1/completions, OpenAI `text_completion`): the prompt is continued as raw text —
no chat template — by the same engines as chat. One prompt and one choice per request."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..core.disconnect import unless_disconnected
from ..core.errors import ApiError, RequestInvalid, error_body
from ..core.openapi import SSE_RESPONSE
from .completion_schemas import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest
from .engine import ChatDelta, ChatParams, Usage
from .prompt import prepare_prompt
from .schemas import PromptTokensDetails, UsageOut
from .service import LlmService

log = logging.getLogger("ddx_omni.llm")
router = APIRouter(tags=["completions"])
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def _one_prompt(prompt: Any) -> str | list[int]:
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        if len(prompt) != 1:
            raise RequestInvalid("Send one prompt per request (a list of prompts is not supported)", param="prompt")
        prompt = prompt[0]
    if isinstance(prompt, list) and not prompt or prompt == "":
        raise RequestInvalid("prompt must not be empty", param="prompt")
    return prompt


def to_params(req: CompletionRequest) -> ChatParams:
    if req.suffix:
        raise RequestInvalid("suffix (fill-in-the-middle) is not supported: send the text before the gap as the "
                             "prompt", param="suffix")
    if (req.n or 1) > 1 or (req.best_of or 1) > 1:
        raise RequestInvalid("n and best_of must be 1: ask for one completion per request", param="n")
    prompt = _one_prompt(req.prompt)
    if req.echo and (isinstance(prompt, list) or req.logprobs is not None):
        raise RequestInvalid("echo works with a text prompt and without logprobs (prompt tokens get no logprobs "
                             "here)", param="echo")
    try:
        bias = {int(k): float(v) for k, v in (req.logit_bias or {}).items()}
    except ValueError:
        raise RequestInvalid("logit_bias keys must be token ids", param="logit_bias") from None
    return ChatParams(messages=[], prompt=prompt, max_tokens=req.max_tokens or 16, temperature=req.temperature,
                      top_p=req.top_p, seed=req.seed, stop=list(req.stop or []),
                      presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
                      logit_bias=bias or None, logprobs=req.logprobs is not None, top_logprobs=req.logprobs or 0)


class _Logprobs:
    """ChatDelta logprob entries → the legacy columns (tokens, token_logprobs, top_logprobs, text_offset)."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def of(self, entries: list[dict[str, Any]] | None) -> CompletionLogprobs:
        out = CompletionLogprobs()
        for entry in entries or []:
            out.tokens.append(entry["token"])
            out.token_logprobs.append(entry["logprob"])
            out.top_logprobs.append({t["token"]: t["logprob"] for t in entry.get("top_logprobs") or []})
            out.text_offset.append(self.offset)
            self.offset += len(entry["token"])
        return out


def _finish(delta: ChatDelta) -> Literal["stop", "length"]:
    return "length" if delta.finish_reason == "length" else "stop"


def _usage(usage: Usage | None) -> UsageOut:
    usage = usage or Usage(0, 0)
    return UsageOut(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                    total_tokens=usage.total_tokens,
                    prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens))


async def _complete(deltas: AsyncIterator[ChatDelta], head: dict[str, Any], echo: str, logprobs: bool) -> Completion:
    text, entries, last = [echo], [], ChatDelta()
    async for delta in deltas:
        text.append(delta.text)
        entries += delta.logprobs or []
        last = delta
    columns = _Logprobs(len(echo)).of(entries) if logprobs else None
    choice = CompletionChoice(text="".join(text), logprobs=columns, finish_reason=_finish(last))
    return Completion(**head, choices=[choice], usage=_usage(last.usage))


def _chunk(head: dict[str, Any], text: str, logprobs: CompletionLogprobs | None = None,
           finish: str | None = None) -> str:
    choice = {"text": text, "index": 0, "logprobs": logprobs.model_dump() if logprobs else None,
              "finish_reason": finish}
    body = {**head, "object": "text_completion", "choices": [choice]}
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _stream(deltas: AsyncIterator[ChatDelta], head: dict[str, Any], echo: str, logprobs: bool,
                  include_usage: bool, path: str) -> AsyncIterator[str]:
    columns, usage = _Logprobs(len(echo)), None
    try:
        if echo:
            yield _chunk(head, echo)
        async for delta in deltas:
            if delta.text or delta.logprobs:
                yield _chunk(head, delta.text, columns.of(delta.logprobs) if logprobs else None)
            if delta.finish_reason:
                yield _chunk(head, "", None, _finish(delta))
            usage = delta.usage or usage
        if include_usage:
            body = {**head, "object": "text_completion", "choices": [], "usage": _usage(usage).model_dump()}
            yield f"data: {json.dumps(body, separators=(',', ':'))}\n\n"
    except ApiError as exc:  # the headers are gone: report in-band, as OpenAI does
        yield f"data: {json.dumps(error_body(path, exc.status, exc.code, exc.message, exc.detail, exc.param))}\n\n"
    except Exception:
        log.exception("completion stream failed")
        yield f"data: {json.dumps(error_body(path, 500, 'llm_error', 'Internal server error'))}\n\n"
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
    yield "data: [DONE]\n\n"


@router.post("/v1/completions", summary="OpenAI legacy completions: raw text continued, no chat template",
             response_model=Completion, responses=SSE_RESPONSE)
async def completions(body: CompletionRequest, request: Request) -> Any:
    service: LlmService = request.app.state.llm
    params = to_params(body)
    engine = await service.engine(body.model)
    await prepare_prompt(engine, params, params.max_tokens or 16, param="prompt")
    head = {"id": f"cmpl-{secrets.token_hex(16)}", "created": int(time.time()), "model": engine.model_id}
    echo = params.prompt if body.echo and isinstance(params.prompt, str) else ""
    deltas = engine.stream(params)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_stream(deltas, head, echo, params.logprobs, include_usage, request.url.path),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    try:
        answer = await unless_disconnected(request, _complete(deltas, head, echo, params.logprobs))
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
    if answer is None:
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it
    return JSONResponse(answer.model_dump())
