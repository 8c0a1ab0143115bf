"""Tool calls and reasoning end to end in real mode: a tiny model whose weights always think briefly, then write
one get_weather call."""

from __future__ import annotations

import json

import openai
import pytest

pytestmark = pytest.mark.slow
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]
ASK = [{"role": "user", "content": "What is the weather in Berlin?"}]
THOUGHT = "The_user_asks_for_the_weather:_call_get_weather."  # scripts/make_model.py SCRIPTED_THOUGHT


def test_tool_call_message(tool_client: openai.OpenAI) -> None:
    r = tool_client.chat.completions.create(model=None, messages=ASK, tools=TOOLS, temperature=0)  # type: ignore[arg-type]
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Berlin"})
    assert choice.message.model_dump()["reasoning_content"] == THOUGHT
    assert r.usage.completion_tokens == 7  # <think>, thought, </think>, <tool_call>, call, </tool_call>, <|im_end|>


def test_tool_call_streamed_as_deltas(tool_client: openai.OpenAI) -> None:
    chunks = list(tool_client.chat.completions.create(model=None, messages=ASK, tools=TOOLS, temperature=0,  # type: ignore[arg-type]
                                                      stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == ""  # no markup leaks into content
    reasoning = "".join(c.choices[0].delta.model_dump().get("reasoning_content") or "" for c in chunks)
    assert reasoning == THOUGHT
    calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [
        (0, "get_weather", {"city": "Berlin"})]
    assert calls[0].id.startswith("call_")
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("extra", [{"tools": TOOLS, "tool_choice": "none"}, {}])
def test_calls_not_asked_for_never_reach_the_client(tool_client: openai.OpenAI, extra: dict) -> None:
    r = tool_client.chat.completions.create(model=None, messages=ASK, temperature=0, **extra)  # type: ignore[arg-type]
    choice = r.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"
    assert choice.message.content == ""  # neither markup nor the dropped call
    assert choice.message.model_dump()["reasoning_content"] == THOUGHT


def test_the_call_and_its_result_go_back_through_the_template(tool_client: openai.OpenAI) -> None:
    first = tool_client.chat.completions.create(model=None, messages=ASK, tools=TOOLS, temperature=0)  # type: ignore[arg-type]
    call = first.choices[0].message.tool_calls[0]
    follow_up = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                       {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'}]
    r = tool_client.chat.completions.create(model=None, messages=follow_up, tools=TOOLS, temperature=0)  # type: ignore[arg-type]
    assert r.usage.prompt_tokens > first.usage.prompt_tokens + 5
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_tool_choice_required_is_answered_with_a_call(tool_client: openai.OpenAI) -> None:
    r = tool_client.chat.completions.create(model=None, messages=ASK, tools=TOOLS, tool_choice="required",  # type: ignore[arg-type]
                                            temperature=0)
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert [c.function.name for c in r.choices[0].message.tool_calls] == ["get_weather"]


def test_named_tool_choice_must_name_a_given_tool(tool_client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as err:
        tool_client.chat.completions.create(model=None, messages=ASK, tools=TOOLS,  # type: ignore[arg-type]
                                            tool_choice={"type": "function", "function": {"name": "other"}})
    assert err.value.body["param"] == "tool_choice"
