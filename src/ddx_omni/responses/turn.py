"""One response being generated: engine deltas → output items and events → one atomic save → terminal event.

A turn runs in its own asyncio task, apart from the HTTP request that started it, so that a client leaving
(or `cancel`) only cancels that task, and the task still saves what was produced before it ends. The loop
is a sequence of steps; today a step is one engine generation, and built-in tools (MCP, code interpreter…)
will add a step that executes their calls and feeds the results back before the next generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ApiError
from ..core.metrics import RESPONSES_STORED
from ..llm.engine import ChatEngine, ChatParams, ToolCall, Usage
from .events import EventLog
from .schemas import function_call_item, message_item, new_id, output_text_part, usage_object
from .store import INPUT, OUTPUT, ItemRow, Store

log = logging.getLogger("ddx_omni.responses")

TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


@dataclass
class TurnPlan:
    """Everything resolved before generation starts (history, prompt, engine)."""

    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    params: ChatParams
    engine: ChatEngine
    store: bool
    conversation_id: str | None
    prompt_tokens: int = 0
    engine_s: float = 0.0  # time spent in the engine while planning (token counts)


@dataclass
class _Output:
    """The output being built: items in order, and the message currently receiving text."""

    items: list[dict[str, Any]] = field(default_factory=list)
    open_message: int | None = None
    usage: Usage | None = None
    finish_reason: str | None = None


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
            await self._generate()
            self._conclude()
        except asyncio.CancelledError:
            if self.task is not None:
                self.task.uncancel()  # so that the save below can await
            self._fail_or_cancel(None)
        except Exception as exc:  # noqa: BLE001 - any engine failure becomes a failed response, not a crash
            if not isinstance(exc, ApiError):
                log.exception("response %s failed", self.id)
            self._fail_or_cancel(exc)
        await self._persist_and_finish()

    async def _generate(self) -> None:
        """One engine generation step; text and tool calls become output items as they arrive."""
        stream = self.plan.engine.stream(self.plan.params)
        deltas = aiter(stream)
        try:
            while True:
                started = time.perf_counter()
                try:
                    delta = await anext(deltas)
                except StopAsyncIteration:
                    break
                finally:
                    self.engine_s += time.perf_counter() - started
                if delta.text:
                    self._on_text(delta.text)
                for call in delta.tool_calls:
                    self._on_tool_call(call)
                if delta.usage is not None:
                    self.out.usage = delta.usage
                if delta.finish_reason:
                    self.out.finish_reason = delta.finish_reason
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()  # stops the engine when we leave early (cancel, disconnect)

    def _on_text(self, text: str) -> None:
        out = self.out
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

    def _close_message(self, status: str) -> None:
        index = self.out.open_message
        if index is None:
            return
        self.out.open_message = None
        item = self.out.items[index]
        part = item["content"][0]
        item["status"] = status
        self.events.text_done(index, item["id"], part["text"])
        self.events.part("response.content_part.done", index, item["id"], part)
        self.events.item_done(index, item)

    def _on_tool_call(self, call: ToolCall) -> None:
        self._close_message("completed")
        item = function_call_item(new_id("fc"), call.id or new_id("call"), call.name, "", status="in_progress")
        self.out.items.append(item)
        index = len(self.out.items) - 1
        self.events.item_added(index, item)
        item["arguments"] = call.arguments
        self.events.arguments(index, item["id"], call.arguments)
        item["status"] = "completed"
        self.events.item_done(index, item)

    # ---- outcomes ----------------------------------------------------------------------------------------
    def _conclude(self) -> None:
        truncated = self.out.finish_reason == "length"
        self._close_message("incomplete" if truncated else "completed")
        self.response["status"] = "incomplete" if truncated else "completed"
        if truncated:
            self.response["incomplete_details"] = {"reason": "max_output_tokens"}
        else:
            self.response["completed_at"] = int(time.time())

    def _fail_or_cancel(self, exc: Exception | None) -> None:
        """Whatever was produced stays, marked incomplete; the status says why the turn ended."""
        index = self.out.open_message
        if index is not None:
            self.out.open_message = None
            self.out.items[index]["status"] = "incomplete"
        for item in self.out.items:
            if item["status"] == "in_progress":
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
        except Exception as exc:  # noqa: BLE001 - a failed save must still end the stream properly
            log.exception("saving response %s failed", self.id)
            response["status"] = "failed"
            response["error"] = {"code": "server_error", "message": f"could not save the response: {exc}"}
            response["completed_at"] = None
            self.events.error("server_error", response["error"]["message"])
        terminal = {"completed": "response.completed", "failed": "response.failed"}.get(
            response["status"], "response.incomplete")
        self.events.response(terminal, response)


def _error_message(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    return f"generation failed: {type(exc).__name__}"
