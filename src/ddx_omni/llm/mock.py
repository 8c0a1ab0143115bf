"""Mock engine: the seed's canned answer (one `get_weather` tool call), so clients can be wired up first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from .engine import ChatDelta, ChatParams, ToolCall, Usage

MOCK_CONTEXT_WINDOW = 32768


def _approx_tokens(params: ChatParams) -> int:
    # No tokenizer in mock mode: count whitespace-separated words (plus role markers) as tokens.
    if params.prompt is not None:  # legacy completions: raw text or token ids
        return len(params.prompt) if isinstance(params.prompt, list) else len(params.prompt.split())
    total = 0
    for message in params.messages:
        content = message.get("content") or ""
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        total += 4 + len(str(content).split())
    return total


class MockEngine:
    context_window = MOCK_CONTEXT_WINDOW

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    async def count_prompt_tokens(self, params: ChatParams) -> int:
        return _approx_tokens(params)

    async def stream(self, params: ChatParams) -> AsyncIterator[ChatDelta]:
        arguments = json.dumps({"city": "Berlin"}, separators=(",", ":"))
        call = ToolCall(id="call_0", name="get_weather", arguments=arguments)
        usage = Usage(prompt_tokens=_approx_tokens(params), completion_tokens=len(arguments.split(",")) + 8)
        yield ChatDelta(tool_calls=[call], finish_reason="tool_calls", usage=usage)
