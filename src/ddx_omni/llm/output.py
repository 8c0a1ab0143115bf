"""Turns streamed model text into clean content and whole tool calls: stop strings and tool-call markup never leak.

Text is held back only while it could still be the start of a stop string or of a tool-call opening tag, so a
stop string split across chunks is still found and trimmed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .engine import ToolCall

ToolParser = Callable[[str, Any], Any]  # mlx-lm's parse_tool_call(text, tools) -> dict | list[dict]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def to_tool_calls(parsed: Any) -> list[ToolCall]:
    """mlx-lm parser output ({name, arguments} or a list of them) → ToolCalls with JSON-text arguments."""
    items = parsed if isinstance(parsed, list) else [parsed]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"not a tool call: {item!r}")
        arguments = item.get("arguments", {})
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(id=new_call_id(), name=item["name"], arguments=text))
    return calls


def _held_suffix(text: str, markers: Sequence[str]) -> int:
    """Length of the longest end of `text` that is a proper beginning of one of `markers`."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest


@dataclass
class Piece:
    text: str = ""
    reasoning: str = ""  # text between the model's think markers (<think>…</think>)
    tool_calls: list[ToolCall] = field(default_factory=list)
    stopped: bool = False  # a stop string was reached: generation should end here


class OutputParser:
    """Feed model text in order; get back the content that is safe to emit, the reasoning, and the tool calls
    completed so far. Stop strings apply to the content only."""

    def __init__(self, stop: Sequence[str] = (), tool_start: str | None = None, tool_end: str | None = None,
                 tool_parser: ToolParser | None = None, tools: Any = None, emit_calls: bool = True,
                 think: tuple[str, str] | None = None, thinking: bool = False) -> None:
        self.stop = [s for s in stop if s]
        self.emit_calls = emit_calls  # False (tool_choice none, or no tools): calls are dropped, markup and all
        self.tool_start = tool_start if tool_parser else None
        self.tool_end = tool_end
        self.tool_parser = tool_parser
        self.tools = tools
        self.think_start: str | None = think[0] if think else None
        self.think_end: str | None = think[1] if think else None
        self._mode = "think" if thinking and think else "text"  # text | tool | think
        self._pending = ""
        self.stopped = False
        self.stopped_by: str | None = None  # the stop string that was reached

    def feed(self, text: str) -> Piece:
        piece = Piece()
        if self.stopped:
            return piece
        self._pending += text
        while not self._step(piece):
            pass
        return piece

    def _step(self, piece: Piece) -> bool:
        """Consume what can be decided of the pending text; True when the rest must wait for more text."""
        if self._mode == "tool":
            end = self._pending.find(self.tool_end) if self.tool_end else -1
            if end < 0:
                return True
            self._close_tool(self._pending[:end], piece)
            self._pending = self._pending[end + len(self.tool_end or ""):]
            return False
        if self._mode == "think":
            assert self.think_end is not None
            end = self._pending.find(self.think_end)
            if end < 0:
                cut = len(self._pending) - _held_suffix(self._pending, [self.think_end])
                piece.reasoning += self._pending[:cut]
                self._pending = self._pending[cut:]
                return True
            piece.reasoning += self._pending[:end]
            self._pending = self._pending[end + len(self.think_end):]
            self._mode = "text"
            return False
        found = [(i, kind, marker) for kind, markers in (("stop", self.stop), ("tool", [self.tool_start]),
                                                         ("think", [self.think_start]))
                 for marker in markers if marker and (i := self._pending.find(marker)) >= 0]
        if not found:
            markers = [m for m in (*self.stop, self.tool_start, self.think_start) if m]
            cut = len(self._pending) - _held_suffix(self._pending, markers)
            piece.text += self._pending[:cut]
            self._pending = self._pending[cut:]
            return True
        at, kind, marker = min(found, key=lambda hit: hit[0])
        piece.text += self._pending[:at]
        self._pending = self._pending[at + len(marker):]
        if kind == "stop":
            self._pending = ""
            self.stopped = piece.stopped = True
            self.stopped_by = marker
            return True
        self._mode = kind
        return False

    def finish(self) -> Piece:
        """End of generation: release held-back text; an unterminated tool call is parsed if it can be."""
        piece = Piece()
        if self._mode == "tool":
            self._close_tool(self._pending, piece)
        elif self._mode == "think":
            piece.reasoning = self._pending
        elif not self.stopped:
            piece.text = self._pending
        self._pending = ""
        self._mode = "text"
        return piece

    def _close_tool(self, body: str, piece: Piece) -> None:
        self._mode = "text"
        if not self.emit_calls:
            return
        if self.tool_start and self.tool_start in body:  # a model that reopened the tag: the last opening counts
            body = body.rsplit(self.tool_start, 1)[1]
        try:
            assert self.tool_parser is not None
            piece.tool_calls.extend(to_tool_calls(self.tool_parser(body, self.tools)))
        except Exception:
            # Not a valid call (a random or confused model): keep the words, drop the markup.
            piece.text += body.strip()
