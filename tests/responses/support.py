"""Test doubles and checkers of the Responses tests: a scripted engine that records its prompts, the
strict checker of a stream's event grammar, and the checker of a response against its wire models."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from ddx_omni.llm.engine import ChatDelta, ChatParams, ToolCall, Usage
from ddx_omni.responses import wire
from ddx_omni.responses.schemas import bad_request, new_id
from ddx_omni.storage.postgres import to_numbered
from ddx_omni.tools.base import Emit, FunctionSpec, ReplayedCall, ToolRequestContext

Piece = str | ToolCall
ITEM_MODELS: dict[str, type[wire.BaseModel]] = {
    "message": wire.MessageItem, "function_call": wire.FunctionCallItem,
    "function_call_output": wire.FunctionCallOutputItem, "reasoning": wire.ReasoningItem,
    "mcp_list_tools": wire.McpListToolsItem, "mcp_call": wire.McpCallItem,
    "mcp_approval_request": wire.McpApprovalRequestItem, "mcp_approval_response": wire.McpApprovalResponseItem,
    "file_search_call": wire.FileSearchCallItem, "web_search_call": wire.WebSearchCallItem,
    "code_interpreter_call": wire.CodeInterpreterCallItem, "compaction": wire.AgentItem}


def assert_wire(body: Any) -> None:
    """A response object (JSON, or the openai SDK's object) fits responses/wire.py's `Response`, and each of
    its output items the model of its own type (not only the agents' catch-all)."""
    body = body if isinstance(body, dict) else body.to_dict()
    wire.Response.model_validate(body)
    for item in body["output"]:
        ITEM_MODELS[item["type"]].model_validate(item)


def count_tokens(messages: list[dict[str, Any]]) -> int:
    """Words + 4 per message: what the scripted engine calls a token."""
    total = 0
    for message in messages:
        total += 4 + len(str(message.get("content") or "").split())
        for call in message.get("tool_calls") or []:
            total += 2 + len(call["function"]["arguments"].split())
    return total


def default_reply(params: ChatParams) -> list[Piece]:
    """A tool call when tools are offered and the user spoke last; the tool's result once it is back;
    otherwise an echo of the last message, word by word."""
    last = params.messages[-1]
    if last["role"] == "tool":
        return ["The ", "weather ", "is ", str(last["content"]), "."]
    if params.tools and last["role"] == "user":
        name = params.tools[0]["function"]["name"]
        return [ToolCall(id=f"call_{len(params.messages)}", name=name, arguments='{"city":"Paris"}')]
    return ["Echo:", *[f" {word}" for word in str(last.get("content") or "").split()]]


@dataclass
class ScriptedEngine:
    """A ChatEngine for tests. Records the prompt of every generation; one piece = one token."""

    reply: Callable[[ChatParams], list[Piece]] = default_reply
    context_window: int = 4096
    delay: float = 0.0  # seconds before each piece: makes a generation long enough to cancel
    fail_after: int | None = None  # raise after this many pieces
    model_id: str = "scripted-model"
    prompts: list[list[dict[str, Any]]] = field(default_factory=list)
    params: list[ChatParams] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)  # per generation: finished | aborted

    async def count_prompt_tokens(self, params: ChatParams) -> int:
        return count_tokens(params.messages)

    async def stream(self, params: ChatParams) -> Iterator[ChatDelta]:  # type: ignore[override]
        self.prompts.append(copy.deepcopy(params.messages))
        self.params.append(params)
        produced, finish, outcome = 0, "stop", "aborted"
        try:
            for piece in self.reply(params):
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.fail_after is not None and produced >= self.fail_after:
                    raise RuntimeError("the scripted engine failed on purpose")
                if isinstance(piece, ToolCall):
                    finish = "tool_calls"
                    yield ChatDelta(tool_calls=[piece])
                else:
                    if params.max_tokens is not None and produced >= params.max_tokens:
                        finish = "length"
                        break
                    yield ChatDelta(text=piece)
                produced += 1
            outcome = "finished"
            yield ChatDelta(finish_reason=finish, usage=Usage(count_tokens(params.messages), produced))
        finally:
            self.outcomes.append(outcome)


class FakeLlm:
    """The LLM component as the responses component sees it, serving one given engine."""

    name = "llm"

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"state": "ready"}

    async def engine(self, model_id: str | None = None) -> Any:
        return self._engine


# ---- a built-in tool kind for the loop's tests ------------------------------------------------------------
# Not a real tool (those are MCP, file search, …, tested in tests/tools): the smallest kind the protocol allows,
# so that the loop itself (steps, events, limits, replay, cancel) is tested apart from any tool's own service.

@dataclass
class LookupKind:
    """`{"type": "lookup"}`: one function `lookup {"key": string}` answering "value of KEY"; `defer_keys` are
    answered with a `lookup_hold` item that ends the turn; `delay` makes a call slow (cancel tests)."""

    type: str = "lookup"
    item_types: tuple[str, ...] = ("lookup_call", "lookup_hold")
    delay: float = 0.0
    answer: str | None = None  # what every call returns instead of "value of KEY"
    calls: list[dict[str, Any]] = field(default_factory=list)
    bound_contexts: list[ToolRequestContext] = field(default_factory=list)

    async def bind(self, spec: dict[str, Any], ctx: ToolRequestContext) -> Any:
        if spec.get("unavailable"):
            return None
        if not isinstance(spec.get("defer_keys", []), list):
            raise bad_request("defer_keys: must be a list", "tools.defer_keys")
        self.bound_contexts.append(ctx)
        return BoundLookup(self, spec)

    def replay(self, items: list[dict[str, Any]]) -> dict[str, ReplayedCall]:
        return {item["id"]: ReplayedCall("lookup", json.dumps({"key": item["key"]}), item["output"])
                for item in items if item.get("type") == "lookup_call" and item.get("output") is not None}


@dataclass
class BoundLookup:
    kind: LookupKind
    spec: dict[str, Any]

    def functions(self) -> list[FunctionSpec]:
        return [FunctionSpec("lookup", "Look a key up", {"type": "object", "properties": {"key": {"type": "string"}},
                                                          "required": ["key"]})]

    def echo(self) -> dict[str, Any]:
        return {key: value for key, value in self.spec.items() if key != "secret"}

    def defer(self, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        if arguments.get("key") in self.spec.get("defer_keys", []):
            return {"id": new_id("hold"), "type": "lookup_hold", "key": arguments["key"]}
        return None

    def new_item(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"id": new_id("lk"), "type": "lookup_call", "status": "in_progress", "key": arguments.get("key"),
                "output": None}

    async def run(self, item: dict[str, Any], name: str, arguments: dict[str, Any], emit: Emit) -> str:
        emit("response.lookup_call.in_progress")
        self.kind.calls.append(arguments)
        if self.kind.delay:
            await asyncio.sleep(self.kind.delay)
        item["output"] = self.kind.answer or f"value of {arguments.get('key')}"
        item["status"] = "completed"
        emit("response.lookup_call.completed")
        return item["output"]

    def annotate(self, text: str) -> list[dict[str, Any]]:
        return [{"type": "url_citation", "url": "https://lookup.test/", "title": "lookup", "start_index": 0,
                 "end_index": len(text)}] if "value of" in text else []


# ---- SSE --------------------------------------------------------------------------------------------------

def read_sse(url: str, body: dict[str, Any] | None = None, *, get: str | None = None
             ) -> tuple[list[dict[str, Any]], list[str]]:
    """POST `body` (or GET the path `get`) and parse the raw stream: (events, raw `event:` names in order).
    Asserts one data line per event and the final [DONE]."""
    events, names = [], []
    request = (("GET", f"{url}{get}", None) if get is not None
               else ("POST", f"{url}/v1/responses", {**(body or {}), "stream": True}))
    with httpx.stream(request[0], request[1], json=request[2], timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    blocks = [b for b in raw.split("\n\n") if b]
    assert blocks[-1] == "data: [DONE]", blocks[-1]
    for block in blocks[:-1]:
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        names.append(lines[0][len("event: "):])
        events.append(json.loads(lines[1][len("data: "):]))
    return events, names


def _check_reasoning(added: dict[str, Any], events: list[dict[str, Any]], done: dict[str, Any]) -> None:
    """reasoning_text deltas, then one done with their text; the item's content holds the same text."""
    kinds = [e["type"] for e in events]
    assert kinds == ["response.reasoning_text.delta"] * (len(kinds) - 1) + ["response.reasoning_text.done"], kinds
    text = "".join(e["delta"] for e in events[:-1])
    assert added["content"] == [{"type": "reasoning_text", "text": ""}] and events[-1]["text"] == text
    assert done["content"] == [{"type": "reasoning_text", "text": text}] and done["status"] == "completed"


BUILTIN_EVENTS: dict[str, Callable[[dict[str, Any], list[dict[str, Any]], dict[str, Any]], None]] = {
    "reasoning": _check_reasoning}


def check_builtin_item(added: dict[str, Any], events: list[dict[str, Any]], done: dict[str, Any]) -> None:
    """A built-in tool item's own events, between its added and done: the grammar registered for its type in
    BUILTIN_EVENTS (MCP's in tests/tools), or else: `<type>.in_progress` first, then `.completed` or `.failed`
    last, when it has any events; no item goes from added to done still in progress."""
    check = BUILTIN_EVENTS.get(done["type"])
    if check is not None:
        check(added, events, done)
        return
    assert done.get("status") != "in_progress"
    if events:
        prefix = f"response.{done['type']}."
        assert [e["type"] for e in events][0] == prefix + "in_progress"
        assert events[-1]["type"] in (prefix + "completed", prefix + "failed")


def check_event_order(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The stream grammar of REFERENCE §5, checked strictly; returns the terminal response."""
    assert [e["sequence_number"] for e in events] == sorted({e["sequence_number"] for e in events}), \
        "sequence numbers must strictly increase"
    assert all(isinstance(e.get("type"), str) for e in events)
    assert events[0]["type"] == "response.created" and events[0]["response"]["output"] == []
    assert events[1]["type"] == "response.in_progress"
    rid = events[0]["response"]["id"]
    terminal_types = ("response.completed", "response.incomplete", "response.failed")
    terminals = [e for e in events if e["type"] in terminal_types]
    assert len(terminals) == 1 and events[-1] is terminals[0], "exactly one terminal event, last"
    final = terminals[0]["response"]
    assert final["id"] == rid

    items: list[dict[str, Any]] = []  # state per output index
    for event in events[2:-1]:
        kind = event["type"]
        if kind == "error":
            assert terminals[0]["type"] == "response.failed"
            assert {"code", "message", "param"} <= set(event) and "error" not in event
            continue
        if kind == "response.output_item.added":
            assert event["output_index"] == len(items), "output indexes are consecutive"
            assert all(s["done"] for s in items), "the previous item is done before the next is added"
            item = event["item"]
            assert item["id"] and item.get("status", "in_progress") == "in_progress"
            if item["type"] == "message":
                assert item["content"] == [] and item["role"] == "assistant"
            elif item["type"] == "function_call":
                assert item["call_id"] and item["name"] and item["arguments"] == ""
            items.append({"item": item, "part": None, "text": "", "text_done": False, "part_done": False,
                          "args": "", "args_done": False, "done": False, "notes": [], "events": []})
            continue
        state = items[event["output_index"]]
        assert not state["done"], f"{kind} after output_item.done"
        if kind in ("response.content_part.added", "response.output_text.delta", "response.output_text.done",
                    "response.content_part.done"):
            assert state["item"]["type"] == "message" and event["item_id"] == state["item"]["id"]
            assert event["content_index"] == 0
        if kind == "response.content_part.added":
            assert state["part"] is None and event["part"]["type"] == "output_text" and event["part"]["text"] == ""
            state["part"] = event["part"]
        elif kind == "response.output_text.delta":
            assert state["part"] is not None and not state["text_done"]
            state["text"] += event["delta"]
        elif kind == "response.output_text.annotation.added":
            assert state["item"]["type"] == "message" and state["part"] is not None and not state["text_done"]
            assert event["annotation_index"] == len(state["notes"]) and event["item_id"] == state["item"]["id"]
            state["notes"].append(event["annotation"])
        elif kind == "response.output_text.done":
            assert state["part"] is not None and not state["text_done"] and event["text"] == state["text"]
            state["text_done"] = True
        elif kind == "response.content_part.done":
            assert state["text_done"] and event["part"]["text"] == state["text"]
            assert event["part"]["annotations"] == state["notes"] and event["part"]["logprobs"] == []
            state["part_done"] = True
        elif kind == "response.function_call_arguments.delta":
            assert state["item"]["type"] == "function_call" and event["item_id"] == state["item"]["id"]
            assert not state["args_done"]
            state["args"] += event["delta"]
        elif kind == "response.function_call_arguments.done":
            assert event["arguments"] == state["args"] and event["item_id"] == state["item"]["id"]
            state["args_done"] = True
        elif kind == "response.output_item.done":
            done_item = event["item"]
            assert done_item["id"] == state["item"]["id"] and done_item["type"] == state["item"]["type"]
            if done_item["type"] == "message":
                assert state["part_done"] or state["part"] is None
                assert [p["text"] for p in done_item["content"]] == [state["text"]]
            elif done_item["type"] == "function_call":
                assert state["args_done"] and done_item["arguments"] == state["args"]
                assert done_item["call_id"] == state["item"]["call_id"]
            else:
                check_builtin_item(state["item"], state["events"], done_item)
            state["done"] = True
            assert final["output"][event["output_index"]] == done_item
        elif state["item"]["type"] not in ("message", "function_call"):
            assert kind.startswith("response.") and event["item_id"] == state["item"]["id"], event
            state["events"].append(event)
        else:
            raise AssertionError(f"unexpected event {kind}")
    assert len(final["output"]) == len(items)
    if terminals[0]["type"] == "response.completed":
        assert all(s["done"] for s in items), "every added item has its done"
    return final


def query(storage_url: str, tmp_path: Path, sql: str, params: Sequence[Any] = (),
          sqlite_file: str = "responses.db") -> list[tuple[Any, ...]]:
    """Rows of a read straight from the test server's database: its SQLite file (`sqlite_file` under tmp_path:
    each component has its own), or its PostgreSQL database; `?` placeholders on both."""
    if not storage_url:
        with contextlib.closing(sqlite3.connect(tmp_path / sqlite_file)) as db:
            rows = db.execute(sql, params).fetchall()
            db.commit()  # a test may write (a row a killed process would have left)
            return rows

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(storage_url)
        try:
            return [tuple(row) for row in await conn.fetch(to_numbered(sql), *params)]
        finally:
            await conn.close()

    return asyncio.run(fetch())
