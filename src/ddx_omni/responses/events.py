"""Streaming events of a response: typed, strictly increasing `sequence_number`, each encoded as one SSE chunk."""

from __future__ import annotations

import copy
import json
from typing import Any

DONE = b"data: [DONE]\n\n"


class EventLog:
    """Numbers events in the order they happen; `on_event` (if set) receives each one as it is made."""

    def __init__(self) -> None:
        self.sequence = 0
        self.listeners: list[Any] = []

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        event = {"type": event_type, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        for listener in self.listeners:
            listener(event)
        return event

    # --- the lifecycle --------------------------------------------------------------------------------
    def response(self, event_type: str, response: dict[str, Any]) -> dict[str, Any]:
        # a snapshot: the live dict keeps changing after the event has been queued
        return self.emit(event_type, response=copy.deepcopy(response))

    def item_added(self, index: int, item: dict[str, Any]) -> dict[str, Any]:
        return self.emit("response.output_item.added", output_index=index, item=copy.deepcopy(item))

    def item_done(self, index: int, item: dict[str, Any]) -> dict[str, Any]:
        return self.emit("response.output_item.done", output_index=index, item=copy.deepcopy(item))

    def part(self, event_type: str, index: int, item_id: str, part: dict[str, Any]) -> dict[str, Any]:
        return self.emit(event_type, item_id=item_id, output_index=index, content_index=0, part=dict(part))

    def text_delta(self, index: int, item_id: str, delta: str) -> dict[str, Any]:
        return self.emit("response.output_text.delta", item_id=item_id, output_index=index, content_index=0,
                         delta=delta, logprobs=[])

    def text_done(self, index: int, item_id: str, text: str) -> dict[str, Any]:
        return self.emit("response.output_text.done", item_id=item_id, output_index=index, content_index=0,
                         text=text, logprobs=[])

    def arguments(self, index: int, item_id: str, arguments: str) -> None:
        """Tool calls arrive whole from the engine: one delta carrying everything, then the done event."""
        self.emit("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=arguments)
        self.emit("response.function_call_arguments.done", item_id=item_id, output_index=index, arguments=arguments)

    def error(self, code: str, message: str, param: str | None = None) -> dict[str, Any]:
        # flat on purpose: the SDK raises on any payload with a top-level `error` key
        return self.emit("error", code=code, message=message, param=param)


def encode(event: dict[str, Any]) -> bytes:
    """`event: <type>` + one `data:` line; json.dumps escapes newlines, so the data is always one line."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()
