"""The protocol every built-in Responses tool kind implements, so one turn loop runs them all.

A request's tool entry (`{"type": "mcp", ...}`, `{"type": "file_search", ...}`…) is bound by its kind's
`ToolKind.bind` to a `BoundTool` for that one response. The model sees a bound tool as plain functions
(`functions()`); when it calls one, the turn loop asks the bound tool for the output item (`new_item`),
announces it (`response.output_item.added`), lets it run (`run`, which fills the item and emits the kind's
own events) and announces it done, then hands `run`'s text back to the model as the function's result.
After the last generation, `annotate` adds the citations the final answer earned (file, url, container file).

The turn loop (`responses/turn.py`, `responses/tooling.py`), step by step:

1. Planning (before anything is streamed): `bind` each built-in entry of `tools` (a 400 there is the HTTP
   answer). The response echoes `BoundTool.echo()` when the tool has it (secrets redacted), else the entry.
2. Turn start, after `response.in_progress`: `await prepare(sink)` of every bound tool that has it, in the
   order of `tools`; it may add output items of its own (MCP's `mcp_list_tools`, a call approved last turn).
3. Each step: the model is offered every bound tool's `functions()` (names made unique, see below) next to the
   client's function tools; a call of a built-in function → `defer` (when the tool has it) or `new_item` +
   `run`; the call and `run`'s text go back to the model as an assistant tool call and a tool message, and
   the model generates again. The loop ends on an answer without built-in calls, on a function tool call
   (handed to the client, as without built-in tools), on a deferred item, or when `max_tool_calls` built-in
   calls have run (the model then answers once more with no tools offered at all).
4. Later turns of a chain / conversation: stored items of a kind become chat messages again through
   `ToolKind.replay`, so the model sees its earlier calls and what they returned.

Names: a built-in function keeps its own name unless another bound tool (or a client function) offers the
same one; then it is shown as `<label>__<name>` (`label`: the tool's `label` attribute when it has one —
MCP's server_label —, else its kind's type). `new_item`/`run` always get the tool's own name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Emit = Callable[..., None]  # emit(event_type, **fields): one SSE event, sequence numbers added by the loop
# The emit handed to `run` (and returned by ItemSink.add) also fills in `item_id` and `output_index` of the item
# it belongs to, so a kind writes emit("response.mcp_call.in_progress") and nothing more.


@dataclass
class FunctionSpec:
    """How a built-in tool appears to the model (scripted mock or real): a function name and its schema."""

    name: str
    description: str
    parameters: dict[str, Any]

    def as_chat_tool(self, name: str | None = None) -> dict[str, Any]:
        return {"type": "function", "function": {"name": name or self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass
class ToolRequestContext:
    """What a kind may read while binding: the response being made and the items before it (chain/conversation)."""

    response_id: str
    history: list[dict[str, Any]]  # canonical stored items before this turn, oldest first
    include: list[str] = field(default_factory=list)  # the request's `include` values
    input_items: list[dict[str, Any]] = field(default_factory=list)  # this turn's input (e.g. mcp_approval_response)
    tool_choice: Any = None  # the request's tool_choice: a kind that cannot run refuses to be forced (400)


@dataclass
class ReplayedCall:
    """A stored built-in call as the model saw it: the function it called, its JSON arguments, what it read back.

    `to_chat_messages` turns it into an assistant tool call (id: the item's id) and the tool message after it."""

    name: str
    arguments: str
    output: str


class ItemSink(Protocol):
    """Where `prepare` puts output items of its own; the loop numbers them and streams their added/done."""

    def add(self, item: dict[str, Any]) -> Emit:
        """Append `item` to the output and announce it (output_item.added); returns an emit bound to it."""
        ...

    def done(self, item: dict[str, Any], replay: ReplayedCall | None = None) -> None:
        """Announce `item` done; `replay`: the call the model must see made before its next generation."""
        ...


class BoundTool(Protocol):
    """One request's tool entry, ready to run.

    Optional members, used when present (a plain object with the four methods below is a complete tool):
    - `label: str` — the prefix of its function names when they collide with another tool's;
    - `echo() -> dict` — the entry as the response echoes it in `tools` (secrets redacted);
    - `async prepare(sink: ItemSink) -> None` — runs once at the start of the turn (see the module docstring);
    - `defer(name, arguments) -> dict | None` — an item that ends the turn instead of running the call (MCP's
      `mcp_approval_request`), or None to run it now.
    """

    def functions(self) -> list[FunctionSpec]: ...

    def new_item(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The output item for a call, status in_progress (ids made here: `fs_…`, `ci_…`, `ws_…`, `mcp_…`)."""
        ...

    async def run(self, item: dict[str, Any], name: str, arguments: dict[str, Any], emit: Emit) -> str:
        """Execute the call, filling `item` (status, results/outputs/error); return what the model reads.
        A failure is reported in the item and the returned text, never raised."""
        ...

    def annotate(self, text: str) -> list[dict[str, Any]]:
        """Annotations for the final answer's output_text (empty when the kind cites nothing)."""
        ...


class ToolKind(Protocol):
    """A built-in tool kind, wired once at start (with its services and settings).

    Optional members:
    - `item_types: tuple[str, ...]` — the output item types it makes; clients may send them back as input
      items (stateless chaining), and they are stored and replayed as they are;
    - `replay(items) -> dict[str, ReplayedCall]` — for the items of a history (any kinds, oldest first), the
      calls of this kind the model made, keyed by item id, so the next turn's prompt shows them;
    - `async start()` / `async stop()` — with the responses component (processes, connections it keeps).
    """

    type: str  # the request tool's `type`; aliases (web_search_preview) are registered under each name

    async def bind(self, spec: dict[str, Any], ctx: ToolRequestContext) -> BoundTool | None:
        """Validate the request's tool entry (raise ApiError 400 for a bad one, `param` naming the field of the
        entry: the loop makes it `tools[i].field`); None: offered but unavailable here (e.g. no web search
        provider), so the model is not shown it."""
        ...
