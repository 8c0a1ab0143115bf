"""Mock engine: scripted replies (`[llm].mock_script`), else the seed's canned `get_weather` call.

A script is an ordered list of rules; the first whose `match` is found in the newest user message (or the
newest tool output, when that is newer) gives the reply. Replies stream like a model's: reasoning, then text
word by word, then tool calls, so every wire protocol built on the engine shows its real shapes.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

from ..core.settings import MockReply, MockRule
from .engine import ChatDelta, ChatParams, ToolCall, Usage

MOCK_CONTEXT_WINDOW = 32768
WORDS = re.compile(r"\s*\S+\s*")  # a word with the whitespace around it: the deltas join back to the text
# one encoder: json.dumps(..., separators=…) builds a new one on every call
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _approx_tokens(params: ChatParams) -> int:
    # No tokenizer in mock mode: count whitespace-separated words (plus role markers) as tokens.
    if params.prompt is not None:  # legacy completions: raw text or token ids
        return len(params.prompt) if isinstance(params.prompt, list) else len(params.prompt.split())
    return sum(4 + len(_text_of(message.get("content")).split()) for message in params.messages)


def trigger_text(messages: list[dict[str, Any]]) -> str:
    """The text rules are matched against: the newest user message or tool output."""
    for message in reversed(messages):
        if message.get("role") in ("user", "tool"):
            return _text_of(message.get("content"))
    return ""


def _offered(params: ChatParams) -> list[str]:
    return [tool.get("function", {}).get("name", "") for tool in params.tools or []]


CANNED = MockReply.model_validate({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Berlin"}}]})


def _missing_tool_reply(reply: MockReply, offered: list[str]) -> MockReply | None:
    """A scripted call of a tool the request does not offer is answered in text, so the client sees why."""
    missing = [call.name for call in reply.tool_calls if call.name not in offered]
    if not missing:
        return None
    shown = ", ".join(offered) or "none"
    return MockReply(content=f"The mock script calls the tool {missing[0]!r}, which this request does not offer "
                             f"(offered: {shown}).")


class MockEngine:
    context_window = MOCK_CONTEXT_WINDOW

    def __init__(self, model_id: str, rules: list[MockRule] | None = None) -> None:
        self.model_id = model_id
        self.rules = rules or []

    async def count_prompt_tokens(self, params: ChatParams) -> int:
        return _approx_tokens(params)

    def reply_for(self, params: ChatParams) -> MockReply:
        text = params.prompt if isinstance(params.prompt, str) else trigger_text(params.messages)
        rule = next((rule for rule in self.rules if rule.match.search(text)), None)
        if rule is None:
            return CANNED  # the seed's behaviour, scripted or not, when nothing matches
        return _missing_tool_reply(rule.reply, _offered(params)) or rule.reply

    async def stream(self, params: ChatParams) -> AsyncIterator[ChatDelta]:
        reply = self.reply_for(params)
        reasoning, text = WORDS.findall(reply.reasoning or ""), WORDS.findall(reply.content or "")
        budget = params.max_tokens or MOCK_CONTEXT_WINDOW  # one word counts as one token, as in usage
        truncated = len(reasoning) + len(text) > budget
        reasoning = reasoning[:budget]
        text = text[:budget - len(reasoning)]
        for word in reasoning:
            yield ChatDelta(reasoning=word)
        for word in text:
            yield ChatDelta(text=word)
        calls = [] if truncated else [_tool_call(call.name, call.arguments, canned=reply is CANNED)
                                      for call in reply.tool_calls]
        used = len(reasoning) + len(text) + sum(len(call.arguments.split(",")) + 8 for call in calls)
        finish = "length" if truncated else ("tool_calls" if calls else "stop")
        yield ChatDelta(tool_calls=calls, finish_reason=finish,
                        usage=Usage(prompt_tokens=_approx_tokens(params), completion_tokens=used))


def _tool_call(name: str, arguments: dict[str, Any], canned: bool) -> ToolCall:
    # scripted calls get fresh ids (agents match outputs to calls by id across a conversation); the canned
    # call keeps the seed's fixed one
    call_id = "call_0" if canned else f"call_{secrets.token_hex(12)}"
    return ToolCall(id=call_id, name=name, arguments=COMPACT_JSON.encode(arguments))
