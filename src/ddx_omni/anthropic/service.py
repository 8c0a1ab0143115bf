"""The Messages API over the chat engines: fit the request in the context, run it, shape deltas into events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..core.errors import ApiError, ContextTooLong, RequestInvalid, anthropic_error_type
from ..core.settings import Settings
from ..llm.engine import ChatDelta, ChatEngine, ChatParams
from ..llm.engine import Usage as EngineUsage
from ..llm.images import has_images
from ..llm.prompt import prepare_prompt
from .convert import chat_params, new_message_id
from .events import BlockWriter, Event, content_of
from .protocol import CountTokensRequest, Message, MessagesRequest, ModelInfo, ModelPage, Usage

log = logging.getLogger("ddx_omni.anthropic")


class Llm(Protocol):
    """What this service needs of the LLM component."""

    registry: dict[str, Any]
    created: int

    async def engine(self, model_id: str | None = None) -> ChatEngine: ...


@dataclass
class Prepared:
    engine: ChatEngine
    params: ChatParams
    prompt_tokens: int
    show_thinking: bool
    single_call: bool
    message_id: str


def fit_context(prompt: int, window: int, max_tokens: int | None) -> int:
    """max_tokens clamped to what the window leaves; a prompt that does not fit by itself is refused in the
    wording Claude Code compacts on."""
    if max_tokens is None:  # the wire model requires it; the engines' params do not
        raise RequestInvalid("max_tokens is required", param="max_tokens")
    if prompt >= window:
        raise ContextTooLong(f"prompt is too long: {prompt} tokens > {window - 1} maximum",
                             {"prompt_tokens": prompt, "context_window": window}, param="messages")
    return min(max_tokens, window - prompt)


def _check_tool_choice(req: CountTokensRequest) -> None:
    choice = req.tool_choice
    if choice is not None and choice.type == "tool":
        names = {t.name for t in req.tools or []}
        if choice.name not in names:
            raise RequestInvalid(f"tool_choice names '{choice.name}', which is not in `tools`", param="tool_choice")


def usage_of(prepared: Prepared, engine_usage: EngineUsage | None, output_tokens: int = 0) -> Usage:
    """Anthropic counts cached prompt tokens apart: input_tokens are the ones the model had to process."""
    if engine_usage is None:
        return Usage(input_tokens=prepared.prompt_tokens, output_tokens=output_tokens)
    cached = min(engine_usage.cached_tokens, engine_usage.prompt_tokens)
    return Usage(input_tokens=engine_usage.prompt_tokens - cached, output_tokens=engine_usage.completion_tokens,
                 cache_read_input_tokens=cached)


class MessagesService:
    def __init__(self, llm: Llm, ping_interval_s: float) -> None:
        self.llm = llm
        self.ping_interval_s = ping_interval_s

    async def count_tokens(self, req: CountTokensRequest) -> int:
        _check_tool_choice(req)
        engine = await self.llm.engine(req.model)
        params = chat_params(req)
        await self._images(engine, params)
        return await engine.count_prompt_tokens(params)

    async def prepare(self, req: MessagesRequest) -> Prepared:
        _check_tool_choice(req)
        engine = await self.llm.engine(req.model)
        params = chat_params(req)
        await self._images(engine, params)
        # the one prompt pipeline (llm/prompt.py): checked, rendered and tokenized once, before any generation
        prompt = await prepare_prompt(engine, params, req.max_tokens, fit=fit_context)
        return Prepared(engine=engine, params=params, prompt_tokens=prompt,
                        show_thinking=req.thinking is None or req.thinking.type != "disabled",
                        single_call=bool(req.tool_choice and req.tool_choice.disable_parallel_tool_use),
                        message_id=new_message_id())

    async def _images(self, engine: ChatEngine, params: ChatParams) -> None:
        if has_images(params):  # only then is the LLM component's image input (llm/images.py) needed
            await self.llm.images.prepare(engine.model_id, params)  # type: ignore[attr-defined]

    def _start(self, prepared: Prepared) -> Event:
        message = Message(id=prepared.message_id, model=prepared.engine.model_id, content=[], stop_reason=None,
                          stop_sequence=None, usage=usage_of(prepared, None))
        return {"type": "message_start", "message": message.model_dump()}

    async def events(self, prepared: Prepared, ping_s: float | None) -> AsyncIterator[Event]:
        """The whole event sequence; `ping` events every `ping_s` while the engine is silent (a long prefill).
        Engine errors are raised (the caller decides: HTTP error or `error` event)."""
        yield self._start(prepared)
        writer = BlockWriter(prepared.show_thinking, prepared.single_call)
        last = ChatDelta(finish_reason="stop")
        deltas = prepared.engine.stream(prepared.params)
        try:
            async for delta in _with_pings(deltas, ping_s):
                if delta is None:
                    yield {"type": "ping"}
                    continue
                for event in writer.feed(delta):
                    yield event
                last = delta if delta.finish_reason else last
        finally:
            await deltas.aclose()  # type: ignore[attr-defined]
        for event in writer.close():
            yield event
        yield {"type": "message_delta",
               "delta": {"stop_reason": writer.stop_reason(last), "stop_sequence": last.stop_sequence},
               "usage": usage_of(prepared, last.usage).model_dump(exclude={"service_tier"})}
        yield {"type": "message_stop"}

    async def create(self, prepared: Prepared) -> Message:
        events = [e async for e in self.events(prepared, None)]
        final = next(e for e in events if e["type"] == "message_delta")
        return Message(id=prepared.message_id, model=prepared.engine.model_id, content=content_of(events),
                       stop_reason=final["delta"]["stop_reason"], stop_sequence=final["delta"]["stop_sequence"],
                       usage=Usage(**final["usage"]))

    async def stream(self, prepared: Prepared) -> AsyncIterator[Event]:
        """For SSE: a ping right after message_start (as Anthropic sends), and errors as an `error` event."""
        try:
            async for event in self.events(prepared, self.ping_interval_s):
                yield event
                if event["type"] == "message_start":
                    yield {"type": "ping"}
        except ApiError as exc:
            yield error_event(anthropic_error_type(exc.status), exc.message)
        except Exception:
            log.exception("messages stream failed")
            yield error_event("api_error", "Internal server error")

    def models(self, limit: int, after_id: str | None, before_id: str | None) -> ModelPage:
        created = datetime.fromtimestamp(self.llm.created, UTC).isoformat().replace("+00:00", "Z")
        cards = [ModelInfo(id=e.id, display_name=e.label or e.id, created_at=created,
                           max_input_tokens=e.context_window) for e in self.llm.registry.values()]
        ids = [c.id for c in cards]
        start = ids.index(after_id) + 1 if after_id in ids else 0
        end = ids.index(before_id) if before_id in ids else len(cards)
        page = cards[start:end][:limit]
        return ModelPage(data=page, has_more=start + len(page) < end, first_id=page[0].id if page else None,
                         last_id=page[-1].id if page else None)


def error_event(kind: str, message: str) -> Event:
    return {"type": "error", "error": {"type": kind, "message": message}}


async def _with_pings(deltas: AsyncIterator[ChatDelta], ping_s: float | None) -> AsyncIterator[ChatDelta | None]:
    """The deltas, with None whenever `ping_s` passes without one. The pending read is never cancelled by a
    timeout (that would close the engine's generator), only when the consumer stops."""
    while True:
        task: asyncio.Future[ChatDelta | None] = asyncio.ensure_future(anext(deltas, None))
        try:
            while not (await asyncio.wait({task}, timeout=ping_s))[0]:
                yield None
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        delta = task.result()
        if delta is None:
            return
        yield delta


def create_service(settings: Settings, llm: Llm) -> MessagesService:
    return MessagesService(llm, settings.anthropic.ping_interval_s)
