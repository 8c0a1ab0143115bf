"""The built-in tools of one response: binding the request's entries to kinds, the names the model sees, forced
choices, and replaying stored built-in calls into the next turn's prompt (protocol: `tools/base.py`)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ApiError
from ..tools.base import BoundTool, ReplayedCall, ToolKind, ToolRequestContext
from .schemas import bad_request


@dataclass
class Bound:
    """One request tool entry, bound: its spec (as sent), its kind and the bound tool."""

    spec: dict[str, Any]
    kind: ToolKind
    tool: BoundTool

    @property
    def label(self) -> str:
        return str(getattr(self.tool, "label", None) or self.spec.get("type"))

    def echo(self) -> dict[str, Any]:
        echo = getattr(self.tool, "echo", None)
        return echo() if echo is not None else copy.deepcopy(self.spec)


@dataclass
class TurnTools:
    """The bound built-in tools of one turn and the function names the model knows them by."""

    bound: list[Bound] = field(default_factory=list)
    client_functions: set[str] = field(default_factory=set)  # the request's own function tools
    by_name: dict[str, tuple[Bound, str]] = field(default_factory=dict)  # model-facing name → (tool, own name)

    def chat_tools(self) -> list[dict[str, Any]]:
        """The built-in functions as chat tools; a name two tools share is prefixed with the tool's label."""
        offered = [(bound, spec) for bound in self.bound for spec in bound.tool.functions()]
        counts = Counter(spec.name for _, spec in offered) + Counter(self.client_functions)
        self.by_name, chat = {}, []
        for bound, spec in offered:
            name = spec.name if counts[spec.name] == 1 else f"{bound.label}__{spec.name}"
            self.by_name[name] = (bound, spec.name)
            chat.append(spec.as_chat_tool(name))
        return chat

    def chosen(self, choice: Any) -> list[str] | None:
        """The model-facing names a built-in `tool_choice` ({type, server_label?, name?}) selects; None when
        the choice is not a built-in form, and [] when the tool it names has no functions this turn (an MCP
        server whose listing failed: the failure is its item's, the model then chooses freely). A name the
        tool does not have is an error. Call after `chat_tools()`."""
        if not isinstance(choice, dict) or choice.get("type") in (None, "function"):
            return None
        of_tool = [(name, own) for name, (bound, own) in self.by_name.items()
                   if bound.spec.get("type") == choice["type"]
                   and choice.get("server_label") in (None, bound.spec.get("server_label"))]
        names = [name for name, own in of_tool if choice.get("name") in (None, own)]
        if of_tool and not names:
            raise bad_request(f"tool_choice: no tool of this request matches {choice}", "tool_choice")
        return names

    def check_choice(self, choice: Any) -> None:
        """At planning: a built-in tool_choice must name a tool type (and server_label) this request offers;
        the function name it may name is checked once the tool's functions are known."""
        if not isinstance(choice, dict) or choice.get("type") in (None, "function"):
            return
        if not any(bound.spec.get("type") == choice["type"]
                   and choice.get("server_label") in (None, bound.spec.get("server_label")) for bound in self.bound):
            raise bad_request(f"tool_choice: no tool of this request matches {choice}", "tool_choice")

    async def prepare(self, sink: Any) -> None:
        for bound in self.bound:
            prepare = getattr(bound.tool, "prepare", None)
            if prepare is not None:
                await prepare(sink)

    def annotations(self, text: str) -> list[dict[str, Any]]:
        return [note for bound in self.bound for note in bound.tool.annotate(text)]


async def bind_tools(kinds: Mapping[str, ToolKind], tools: list[dict[str, Any]] | None,
                     ctx: ToolRequestContext) -> tuple[list[dict[str, Any]], TurnTools]:
    """Every non-function entry of `tools` bound to its kind → (their echoes, in request order, and the
    TurnTools). An entry of a type no kind serves is a 400 `unsupported_tool`, as before built-in tools."""
    echoes: list[dict[str, Any]] = []
    turn_tools = TurnTools()
    labels: set[tuple[Any, Any]] = set()
    for index, spec in enumerate(tools or []):
        kind_name = spec.get("type")
        if spec.get("server_label") is not None:  # one entry per server: its label names its calls' items
            if (kind_name, spec["server_label"]) in labels:
                raise bad_request(f"tools[{index}]: a second {kind_name} tool with server_label "
                                  f"{spec['server_label']!r}", f"tools[{index}].server_label")
            labels.add((kind_name, spec["server_label"]))
        if kind_name == "function":
            turn_tools.client_functions.add(str(spec.get("name")))
            continue
        kind = kinds.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            served = ", ".join(["function", *sorted(kinds)])
            raise bad_request(f"tools[{index}]: tool type {kind_name!r} is not supported here (served: {served})",
                              f"tools[{index}].type", code="unsupported_tool")
        try:
            tool = await kind.bind(spec, ctx)
        except ApiError as exc:  # a kind names the field of its entry; the client needs the whole path
            if exc.param and not exc.param.startswith(("tools[", "input", "tool_choice")):
                exc.param = f"tools[{index}].{exc.param}"
            raise
        bound = Bound(spec, kind, tool) if tool is not None else None
        echoes.append(bound.echo() if bound is not None else copy.deepcopy(spec))
        if bound is not None:
            turn_tools.bound.append(bound)
    return echoes, turn_tools


def replays(kinds: Mapping[str, ToolKind], items: list[dict[str, Any]]) -> dict[str, ReplayedCall]:
    """The built-in calls in `items` (a history), as each kind replays them; one kind under several type
    names (aliases) is asked once."""
    found: dict[str, ReplayedCall] = {}
    seen: set[int] = set()
    for kind in kinds.values():
        replay = getattr(kind, "replay", None)
        if replay is None or id(kind) in seen:
            continue
        seen.add(id(kind))
        found.update(replay(items))
    return found


def item_types(kinds: Mapping[str, ToolKind]) -> set[str]:
    """Output item types of the kinds, accepted back as input items."""
    return {kind_type for kind in kinds.values() for kind_type in getattr(kind, "item_types", ())}
