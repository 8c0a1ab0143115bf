"""The protocol every built-in Responses tool kind implements, so one turn loop runs them all.

A request's tool entry (`{"type": "mcp", ...}`, `{"type": "file_search", ...}`…) is bound by its kind's
`ToolKind.bind` to a `BoundTool` for that one response. The model sees a bound tool as plain functions
(`functions()`); when it calls one, the turn loop asks the bound tool for the output item (`new_item`),
announces it (`response.output_item.added`), lets it run (`run`, which fills the item and emits the kind's
own events) and announces it done, then hands `run`'s text back to the model as the function's result.
After the last generation, `annotate` adds the citations the final answer earned (file, url, container file).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Emit = Callable[..., None]  # emit(event_type, **fields): one SSE event, sequence numbers added by the loop


@dataclass
class FunctionSpec:
    """How a built-in tool appears to the model (scripted mock or real): a function name and its schema."""

    name: str
    description: str
    parameters: dict[str, Any]

    def as_chat_tool(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass
class ToolRequestContext:
    """What a kind may read while binding: the response being made and the items before it (chain/conversation)."""

    response_id: str
    history: list[dict[str, Any]]  # canonical stored items before this turn, oldest first
    include: list[str] = field(default_factory=list)  # the request's `include` values
    tool_choice: Any = None  # the request's tool_choice: a kind refuses to be forced when it cannot run


class BoundTool(Protocol):
    """One request's tool entry, ready to run."""

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
    """A built-in tool kind, wired once at start (with its services and settings)."""

    type: str  # the request tool's `type`; aliases (web_search_preview) are registered under each name

    async def bind(self, spec: dict[str, Any], ctx: ToolRequestContext) -> BoundTool | None:
        """Validate the request's tool entry (raise ApiError 400 for a bad one); None: offered but unavailable
        here (e.g. no web search provider), so the model is not shown it."""
        ...
