"""Streaming events of a response: typed, strictly increasing `sequence_number`, each encoded as one SSE chunk."""

from __future__ import annotations

import copy
import json
from typing import Any

DONE = b"data: [DONE]\n\n"


class EventLog:
    """Numbers events in the order they happen and hands each to the listeners (an SSE stream's queue).
    Without listeners (a plain JSON request) nothing is built: snapshots of the response are not free."""

    def __init__(self, keep: bool = False) -> None:
        self.sequence = 0
        self.listeners: list[Any] = []
        # background responses keep every event, so that a client can (re)attach with GET ?stream=true
        self.history: list[dict[str, Any]] | None = [] if keep else None

    def emit(self, event_type: str, **fields: Any) -> None:
        if self.listeners or self.history is not None:
            event = {"type": event_type, "sequence_number": self.sequence, **fields}
            if self.history is not None:
                self.history.append(event)
            for listener in self.listeners:
                listener(event)
        self.sequence += 1

    def subscribe(self, listener: Any, starting_after: int | None = None) -> None:
        """Replay the kept events after `starting_after`, then deliver new ones as they come."""
        for event in self.history or []:
            if starting_after is None or event["sequence_number"] > starting_after:
                listener(event)
        self.listeners.append(listener)

    def _snapshot(self, value: dict[str, Any]) -> dict[str, Any]:
        # the live dict keeps changing after the event has been queued
        return copy.deepcopy(value) if self.listeners or self.history is not None else value

    # --- the lifecycle --------------------------------------------------------------------------------
    def response(self, event_type: str, response: dict[str, Any]) -> None:
        self.emit(event_type, response=self._snapshot(response))

    def item_added(self, index: int, item: dict[str, Any]) -> None:
        self.emit("response.output_item.added", output_index=index, item=self._snapshot(item))

    def item_done(self, index: int, item: dict[str, Any]) -> None:
        self.emit("response.output_item.done", output_index=index, item=self._snapshot(item))

    def part(self, event_type: str, index: int, item_id: str, part: dict[str, Any]) -> None:
        self.emit(event_type, item_id=item_id, output_index=index, content_index=0, part=dict(part))

    def text_delta(self, index: int, item_id: str, delta: str) -> None:
        self.emit("response.output_text.delta", item_id=item_id, output_index=index, content_index=0,
                         delta=delta, logprobs=[])

    def text_done(self, index: int, item_id: str, text: str) -> None:
        self.emit("response.output_text.done", item_id=item_id, output_index=index, content_index=0,
                         text=text, logprobs=[])

    def arguments(self, index: int, item_id: str, arguments: str) -> None:
        """Tool calls arrive whole from the engine: one delta carrying everything, then the done event."""
        self.emit("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=arguments)
        self.emit("response.function_call_arguments.done", item_id=item_id, output_index=index, arguments=arguments)

    def error(self, code: str, message: str, param: str | None = None) -> None:
        # Flat, as OpenAI sends it: the openai SDK (3.52) raises APIError on any event with a top-level `error`
        # key and never yields the `response.failed` after it; the Open Responses spec's nested form would do
        # that (tests/responses/test_stream.py shows the SDK reading this one)
        self.emit("error", code=code, message=message, param=param)


def encode(event: dict[str, Any]) -> bytes:
    """`event: <type>` + one `data:` line; json.dumps escapes newlines, so the data is always one line."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()
