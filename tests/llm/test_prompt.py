"""How OpenAI messages and tool_choice become the text a chat template renders."""

from __future__ import annotations

from ddx_omni.llm.engine import ChatParams
from ddx_omni.llm.mlx_engine import _template_message, forced_prefix

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def test_messages_become_template_friendly() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "not json"}}]}
    out = _template_message(message)
    assert out["content"] == ""
    assert [c["function"]["arguments"] for c in out["tool_calls"]] == [{"a": 1}, "not json"]
    assert message["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'  # the request is not modified
    parts = _template_message({"role": "developer", "content": [{"type": "text", "text": "a"},
                                                                {"type": "text", "text": "b"}]})
    assert parts == {"role": "system", "content": "ab"}


def test_forced_prefix_per_tool_choice() -> None:
    def prefix(choice, parser="json_tools", tools=TOOLS) -> str:
        return forced_prefix(ChatParams(messages=[], tools=tools, tool_choice=choice), "<tool_call>", parser)

    assert prefix(None) == prefix("auto") == prefix("none") == ""
    assert prefix("required") == "<tool_call>\n"
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert prefix(named) == "<tool_call>\n"  # with json_tools, the name comes from forced_call_format's grammar
    assert prefix(named, parser="qwen3_coder") == "<tool_call>\n"
    assert prefix("required", tools=None) == ""
