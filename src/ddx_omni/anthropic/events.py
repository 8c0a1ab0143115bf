"""Engine deltas → Anthropic stream events (content blocks with gap-free indexes), and events → a whole message.

The non-streamed answer is built by replaying the same events, as the SDK's stream helper does, so the two
forms cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..llm.engine import ChatDelta, ToolCall
from .convert import tool_use_id

Event = dict[str, Any]
_STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use", "stop": "end_turn"}


def _tool_input(arguments: str) -> str:
    """The call's arguments as a JSON object text (a model's non-object or broken JSON becomes {})."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        value = None
    return json.dumps(value if isinstance(value, dict) else {}, ensure_ascii=False)


def signature(thinking: str) -> str:
    # Anthropic's signature is opaque and only checked by Anthropic; Claude Code renders a thinking block only
    # once a signature_delta came, so it gets a stable non-empty value.
    return "ddx-" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


class BlockWriter:
    """Feed deltas in order; get the content_block_* events. Leading whitespace before a text block is held back,
    so a model's newline between its reasoning and a tool call does not become an empty text block."""

    def __init__(self, show_thinking: bool = True, single_call: bool = False) -> None:
        self.show_thinking = show_thinking
        self.single_call = single_call  # disable_parallel_tool_use: at most one tool_use block
        self.index = -1
        self.kind: str | None = None  # type of the open block
        self.thinking = ""
        self.held = ""
        self.calls = 0

    def feed(self, delta: ChatDelta) -> list[Event]:
        events: list[Event] = []
        if delta.reasoning and self.show_thinking:
            events += self._thinking(delta.reasoning)
        if delta.text:
            events += self._text(delta.text)
        for call in delta.tool_calls:
            if not (self.single_call and self.calls):
                events += self._tool_use(call)
        return events

    def close(self) -> list[Event]:
        """End of the answer: close the open block; an answer with no block at all gets one (empty) text block."""
        events = self._close()
        if self.index < 0:
            events += self._open({"type": "text", "text": ""})
            if self.held:
                events.append(self._delta({"type": "text_delta", "text": self.held}))
            events += self._close()
        return events

    def stop_reason(self, last: ChatDelta) -> str:
        if last.stop_sequence:
            return "stop_sequence"
        reason = _STOP_REASONS.get(last.finish_reason or "stop", "end_turn")
        return "end_turn" if reason == "tool_use" and not self.calls else reason

    def _open(self, block: dict[str, Any]) -> list[Event]:
        self.index += 1
        self.kind = block["type"]
        return [{"type": "content_block_start", "index": self.index, "content_block": block}]

    def _delta(self, delta: dict[str, Any]) -> Event:
        return {"type": "content_block_delta", "index": self.index, "delta": delta}

    def _close(self) -> list[Event]:
        if self.kind is None:
            return []
        events = []
        if self.kind == "thinking":
            events.append(self._delta({"type": "signature_delta", "signature": signature(self.thinking)}))
            self.thinking = ""
        events.append({"type": "content_block_stop", "index": self.index})
        self.kind = None
        return events

    def _thinking(self, text: str) -> list[Event]:
        events = [] if self.kind == "thinking" else self._close() + self._open(
            {"type": "thinking", "thinking": "", "signature": ""})
        self.thinking += text
        return [*events, self._delta({"type": "thinking_delta", "thinking": text})]

    def _text(self, text: str) -> list[Event]:
        if self.kind != "text":
            if not (self.held + text).strip():
                self.held += text
                return []
            text, self.held = self.held + text, ""
            return self._close() + self._open({"type": "text", "text": ""}) + [
                self._delta({"type": "text_delta", "text": text})]
        return [self._delta({"type": "text_delta", "text": text})]

    def _tool_use(self, call: ToolCall) -> list[Event]:
        self.calls += 1
        self.held = ""
        events = self._close() + self._open({"type": "tool_use", "id": tool_use_id(call.id), "name": call.name,
                                             "input": {}})
        events.append(self._delta({"type": "input_json_delta", "partial_json": _tool_input(call.arguments)}))
        return events + self._close()


def _apply_delta(block: dict[str, Any], delta: dict[str, Any]) -> None:
    kind = delta["type"]
    if kind == "text_delta":
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        block["signature"] = delta["signature"]
    elif kind == "input_json_delta":
        block["_json"] = block.get("_json", "") + delta["partial_json"]


def content_of(events: list[Event]) -> list[dict[str, Any]]:
    """Replay content_block_* events into the message's content list."""
    blocks: list[dict[str, Any]] = []
    for event in events:
        if event["type"] == "content_block_start":
            blocks.append(dict(event["content_block"]))
        elif event["type"] == "content_block_delta":
            _apply_delta(blocks[event["index"]], event["delta"])
        elif event["type"] == "content_block_stop" and "_json" in blocks[event["index"]]:
            block = blocks[event["index"]]
            block["input"] = json.loads(block.pop("_json"))
    return blocks
