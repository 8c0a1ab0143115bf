"""One response being generated: engine deltas → output items and events → one atomic save → terminal event.

A turn runs in its own asyncio task, apart from the HTTP request that started it, so that a client leaving
(or `cancel`) only cancels that task, and the task still saves what was produced before it ends. The turn is
a loop of steps (see `tools/base.py`): each step is one engine generation; when the model calls built-in
tools, they run, their results go back to the model, and it generates again. Usage sums every generation;
`max_output_tokens` bounds the output of the whole turn.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ApiError
from ..core.metrics import RESPONSES_STORED
from ..llm.engine import ChatEngine, ChatParams, ToolCall, Usage
from ..llm.prompt import check_tool_choice
from ..tools.base import Emit, ReplayedCall
from .events import EventLog
from .prompt import PromptFitter
from .schemas import function_call_item, message_item, new_id, output_text_part, reasoning_item, usage_object
from .store import INPUT, OUTPUT, ItemRow, Store
from .tooling import Bound, TurnTools

log = logging.getLogger("ddx_omni.responses")

TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
UNFINISHED = ("in_progress", "searching", "calling", "interpreting", "generating")


@dataclass
class TurnPlan:
    """Everything resolved before generation starts (history, prompt, engine, tools)."""

    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    params: ChatParams  # the first generation's: fitted messages, the client's function tools
    engine: ChatEngine
    store: bool
    conversation_id: str | None
    prompt_tokens: int = 0
    engine_s: float = 0.0  # time spent in the engine while planning (token counts)
    context: list[dict[str, Any]] = field(default_factory=list)  # the history + input items the prompt holds
    fitter: PromptFitter | None = None  # rebuilds the prompt for later steps (None: single-step only)
    tools: TurnTools = field(default_factory=TurnTools)
    max_tool_calls: int = 16


@dataclass
class _Output:
    """The output being built: items in order, and the message currently receiving text."""

    items: list[dict[str, Any]] = field(default_factory=list)
    open_message: int | None = None
    open_reasoning: int | None = None  # the reasoning item receiving a thinking model's reasoning
    usage: Usage | None = None
    finish_reason: str | None = None


class _Sink:
    """The ItemSink a bound tool's `prepare` writes to (tools/base.py)."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn

    def add(self, item: dict[str, Any]) -> Emit:
        return self.turn._add_item(item)

    def done(self, item: dict[str, Any], replay: ReplayedCall | None = None) -> None:
        self.turn._item_done(item, replay)


class Turn:
    def __init__(self, plan: TurnPlan, store: Store, events: EventLog | None = None) -> None:
        self.plan = plan
        self.response = plan.response
        self.store = store
        self.events = events or EventLog()
        self.out = _Output()
        self.stop_reason: str | None = None  # "cancelled" | "shutdown" once asked to stop
        self.task: asyncio.Task[None] | None = None
        self.engine_s = plan.engine_s  # time inside the engine, for the Server-Timing header
        self.tools_s = 0.0  # time inside built-in tools (listing, calls), for the same header

    @property
    def id(self) -> str:
        return self.response["id"]

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"response {self.id}")
        return self.task

    def stop(self, reason: str = "cancelled") -> None:
        """Stop generating (client gone, `cancel`, shutdown); the task still saves and ends the stream."""
        if self.task is not None and not self.task.done() and self.stop_reason is None:
            self.stop_reason = reason
            self.task.cancel()

    # ---- the loop ----------------------------------------------------------------------------------------
    async def run(self) -> None:
        events = self.events
        try:
            events.response("response.created", self.response)
            self.response["status"] = "in_progress"
            if self.response["background"]:  # its queued row is visible to GET: say it has started
                await self.store.update_status(self.response)
            events.response("response.in_progress", self.response)
            await self._steps()
            self._conclude()
        except asyncio.CancelledError:
            if self.task is not None:
                self.task.uncancel()  # so that the save below can await
            self._fail_or_cancel(None)
        except Exception as exc:  # any engine failure becomes a failed response, not a crash
            if not isinstance(exc, ApiError):
                log.exception("response %s failed", self.id)
            self._fail_or_cancel(exc)
        await self._persist_and_finish()

    async def _steps(self) -> None:
        """Generate; run the built-in calls the model makes and generate again, until it is done."""
        tools = self.plan.tools
        started = time.perf_counter()
        await tools.prepare(_Sink(self))
        self.tools_s += time.perf_counter() - started
        calls_left, step = self.plan.max_tool_calls, 0
        while True:
            params = await self._step_params(step, offer=bool(tools.bound) and calls_left > 0)
            if params is None:
                return
            calls = await self._generate(params)
            step += 1
            if self.out.finish_reason == "length" or not calls:
                return
            ended, ran = await self._handle_calls(calls, calls_left)
            calls_left -= ran
            if ended or not ran:
                return

    async def _step_params(self, step: int, offer: bool) -> ChatParams | None:
        """The generation of step `step`: the prompt so far, the tools offered, the output budget left.
        None when the output budget is spent (the turn ends incomplete)."""
        base, tools = self.plan.params, self.plan.tools
        params = dataclasses.replace(base)
        builtin = tools.chat_tools() if offer else []
        if not offer:
            tools.by_name = {}
        # the same list when nothing is added: the prompt the plan rendered (params.rendered) then still holds
        params.tools = [*(base.tools or []), *builtin] if builtin else base.tools
        if step:
            # forcing applies to the first generation only; with no built-in calls left the model must answer
            params.tool_choice = None if base.tool_choice in (None, "none") else "auto"
            if not offer and tools.bound:
                params.tools, params.tool_choice = None, None
        else:
            self._force(params, tools.chosen(base.tool_choice) if offer else [])
            check_tool_choice(params)  # the built-in tools' functions are known now: a named one must be offered
        used = self.out.usage.completion_tokens if self.out.usage else 0
        if base.max_tokens is not None:
            params.max_tokens = base.max_tokens - used
            if params.max_tokens < 1:
                self.out.finish_reason = "length"
                return None
        if self.out.items and self.plan.fitter is not None:
            items = [*self.plan.context, *self.out.items]
            await self.plan.fitter.fit(params, items, keep=len(self.out.items))
        return params

    @staticmethod
    def _force(params: ChatParams, names: list[str] | None) -> None:
        """A built-in tool_choice: one function → a named choice; several → only they are offered, required;
        none (its tool has no functions this turn) → auto. None: not a built-in choice, left as it is."""
        if names is None:
            return
        if not names:
            if isinstance(params.tool_choice, dict) and params.tool_choice.get("type") != "function":
                params.tool_choice = "auto"
            return
        if len(names) == 1:
            params.tool_choice = {"type": "function", "function": {"name": names[0]}}
            return
        params.tools = [tool for tool in params.tools or [] if tool["function"]["name"] in names]
        params.tool_choice = "required"

    async def _generate(self, params: ChatParams) -> list[ToolCall]:
        """One engine generation; text becomes output as it arrives, the tool calls made are returned."""
        stream = self.plan.engine.stream(params)
        deltas = aiter(stream)
        calls: list[ToolCall] = []
        self.out.finish_reason = None
        try:
            while True:
                started = time.perf_counter()
                try:
                    delta = await anext(deltas)
                except StopAsyncIteration:
                    break
                finally:
                    self.engine_s += time.perf_counter() - started
                if delta.reasoning:
                    self._on_reasoning(delta.reasoning)
                if delta.text:
                    self._on_text(delta.text)
                calls.extend(delta.tool_calls)
                if delta.usage is not None:
                    self._add_usage(delta.usage)
                if delta.finish_reason:
                    self.out.finish_reason = delta.finish_reason
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()  # stops the engine when we leave early (cancel, disconnect)
        return calls

    def _add_usage(self, usage: Usage) -> None:
        total = self.out.usage
        self.out.usage = usage if total is None else Usage(total.prompt_tokens + usage.prompt_tokens,
                                                           total.completion_tokens + usage.completion_tokens,
                                                           total.cached_tokens + usage.cached_tokens)

    def _on_reasoning(self, text: str) -> None:
        """Reasoning streams into a `reasoning` item (OpenAI's shape for open-weight models: reasoning_text)."""
        out = self.out
        if out.open_reasoning is None:
            item = reasoning_item(new_id("rs"))
            out.items.append(item)
            out.open_reasoning = len(out.items) - 1
            self.events.item_added(out.open_reasoning, item)
        item = out.items[out.open_reasoning]
        item["content"][0]["text"] += text
        self.events.emit("response.reasoning_text.delta", item_id=item["id"], output_index=out.open_reasoning,
                         content_index=0, delta=text)

    def _close_reasoning(self) -> None:
        index = self.out.open_reasoning
        if index is None:
            return
        self.out.open_reasoning = None
        item = self.out.items[index]
        item["status"] = "completed"
        self.events.emit("response.reasoning_text.done", item_id=item["id"], output_index=index, content_index=0,
                         text=item["content"][0]["text"])
        self.events.item_done(index, item)

    def _on_text(self, text: str) -> None:
        out = self.out
        self._close_reasoning()
        if out.open_message is None:
            item = message_item(new_id("msg"))
            out.items.append(item)
            out.open_message = index = len(out.items) - 1
            self.events.item_added(index, item)
            item["content"].append(output_text_part(""))
            self.events.part("response.content_part.added", index, item["id"], item["content"][0])
        index = out.open_message
        item = out.items[index]
        item["content"][0]["text"] += text
        self.events.text_delta(index, item["id"], text)

    def _close_message(self, status: str, final: bool = False) -> None:
        self._close_reasoning()
        index = self.out.open_message
        if index is None:
            return
        self.out.open_message = None
        item = self.out.items[index]
        part = item["content"][0]
        item["status"] = status
        if final and self.plan.tools.bound:
            for number, note in enumerate(self.plan.tools.annotations(part["text"])):
                part["annotations"].append(note)
                self.events.emit("response.output_text.annotation.added", item_id=item["id"], output_index=index,
                                 content_index=0, annotation_index=number, annotation=dict(note))
        self.events.text_done(index, item["id"], part["text"])
        self.events.part("response.content_part.done", index, item["id"], part)
        self.events.item_done(index, item)

    # ---- tool calls -------------------------------------------------------------------------------------
    async def _handle_calls(self, calls: list[ToolCall], calls_left: int) -> tuple[bool, int]:
        """Function calls become items for the client (and end the turn); built-in calls run (at most
        `calls_left`; later ones are dropped unseen) or are deferred (ending the turn) → (ended, ran)."""
        self._close_message("completed")
        ended, ran = False, 0
        for call in calls:
            found = self.plan.tools.by_name.get(call.name)
            if found is None:
                self._function_call_item(call)
                ended = True
            elif ran < calls_left:
                ran += 1
                ended |= await self._builtin_call(found[0], found[1], call)
        return ended, ran

    def _function_call_item(self, call: ToolCall) -> None:
        item = function_call_item(new_id("fc"), call.id or new_id("call"), call.name, "", status="in_progress")
        self.out.items.append(item)
        index = len(self.out.items) - 1
        self.events.item_added(index, item)
        item["arguments"] = call.arguments
        self.events.arguments(index, item["id"], call.arguments)
        item["status"] = "completed"
        self.events.item_done(index, item)

    async def _builtin_call(self, bound: Bound, name: str, call: ToolCall) -> bool:
        """Run one built-in call (or add the item that defers it: True, the turn ends there)."""
        arguments = _arguments(call.arguments)
        defer = getattr(bound.tool, "defer", None)
        deferred = defer(name, arguments) if defer is not None else None
        if deferred is not None:
            self._add_item(deferred)
            self._item_done(deferred)
            return True
        item = bound.tool.new_item(name, arguments)
        emit = self._add_item(item)
        started = time.perf_counter()
        text = await bound.tool.run(item, name, arguments, emit)
        self.tools_s += time.perf_counter() - started
        self._item_done(item, ReplayedCall(call.name, call.arguments, text))
        return False

    def _add_item(self, item: dict[str, Any]) -> Emit:
        self._close_message("completed")
        self.out.items.append(item)
        index = len(self.out.items) - 1
        self.events.item_added(index, item)

        def emit(event_type: str, **fields: Any) -> None:
            self.events.emit(event_type, **{"item_id": item["id"], "output_index": index, **fields})
        return emit

    def _item_done(self, item: dict[str, Any], replay: ReplayedCall | None = None) -> None:
        index = next(i for i in range(len(self.out.items) - 1, -1, -1) if self.out.items[i] is item)
        self.events.item_done(index, item)
        if replay is not None and self.plan.fitter is not None:
            self.plan.fitter.replays[item["id"]] = replay

    # ---- outcomes ----------------------------------------------------------------------------------------
    def _conclude(self) -> None:
        truncated = self.out.finish_reason == "length"
        self._close_message("incomplete" if truncated else "completed", final=not truncated)
        self.response["status"] = "incomplete" if truncated else "completed"
        if truncated:
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
        else:
            self.response["completed_at"] = int(time.time())

    def _fail_or_cancel(self, exc: Exception | None) -> None:
        """Whatever was produced stays, marked incomplete; the status says why the turn ended."""
        self.out.open_reasoning = None  # its in_progress status becomes incomplete below
        index = self.out.open_message
        if index is not None:
            self.out.open_message = None
            self.out.items[index]["status"] = "incomplete"
        for item in self.out.items:
            if item.get("status") in UNFINISHED:
                item["status"] = "incomplete"
        if exc is None and self.stop_reason == "cancelled":
            self.response["status"] = "cancelled"
            return
        self.response["status"] = "failed"
        message = "the server stopped before the response finished" if exc is None else _error_message(exc)
        self.response["error"] = {"code": "server_error", "message": message}
        if exc is not None:
            self.events.error("server_error", message)

    async def _persist_and_finish(self) -> None:
        response = self.response
        response["output"] = self.out.items
        usage = self.out.usage
        prompt = usage.prompt_tokens if usage else self.plan.prompt_tokens
        response["usage"] = usage_object(prompt, usage.completion_tokens if usage else 0,
                                         usage.cached_tokens if usage else 0)
        rows = [ItemRow(item, INPUT) for item in self.plan.input_items]
        rows += [ItemRow(item, OUTPUT) for item in self.out.items]
        try:
            # shielded: a second cancel (shutdown) must not abort the transaction half-way
            await asyncio.shield(self.store.save_response(response, rows, conversation_id=self.plan.conversation_id,
                                                          store_response=self.plan.store))
            if self.plan.store:
                RESPONSES_STORED.labels(response["status"]).inc()
        except Exception as exc:  # a failed save must still end the stream properly
            log.exception("saving response %s failed", self.id)
            response["status"] = "failed"
            response["error"] = {"code": "server_error", "message": f"could not save the response: {exc}"}
            response["completed_at"] = None
            self.events.error("server_error", response["error"]["message"])
        terminal = {"completed": "response.completed", "failed": "response.failed"}.get(
            response["status"], "response.incomplete")
        self.events.response(terminal, response)


def _arguments(text: str) -> dict[str, Any]:
    """A call's JSON arguments; anything but a JSON object (a confused model) runs with none."""
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _error_message(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    return f"generation failed: {type(exc).__name__}"
