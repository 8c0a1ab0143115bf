"""Scripted mock mode through the official openai SDK: chat, Responses round trips and chains, bad scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

MODEL = "mlx-community/Qwen3-4B-Instruct-2507-4bit"
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                  "parameters": {"type": "object",
                                                                 "properties": {"city": {"type": "string"}}}}}
RESPONSES_TOOL = {"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}
SCRIPT = [
    {"match": "(?i)weather in (\\w+)", "reply": {"tool_calls": [{"name": "get_weather",
                                                                 "arguments": {"city": "Paris"}}]}},
    {"match": "\"sky\": ?\"clear\"", "reply": {"content": "It is clear in Paris, 21 degrees.",
                                               "reasoning": "The tool says the sky is clear."}},
    {"match": "my name is (\\w+)", "reply": {"content": "Nice to meet you."}},
    {"match": "(?i)what is my name", "reply": {"content": "You told me before: Ada."}},
    {"match": "call the missing tool", "reply": {"tool_calls": [{"name": "no_such_tool", "arguments": {}}]}},
]


def write_script(tmp_path: Path, rules: Any, name: str = "script.json") -> Path:
    path = tmp_path / name
    path.write_text(rules if isinstance(rules, str) else json.dumps(rules))
    return path


@pytest.fixture
def scripted_url(server_factory, tmp_path: Path) -> str:
    return server_factory({"llm.mock_script": str(write_script(tmp_path, SCRIPT))})


@pytest.fixture
def sdk(scripted_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{scripted_url}/v1", api_key="unused", max_retries=0, timeout=30)


def test_chat_scripted_tool_call_then_text(sdk: openai.OpenAI) -> None:
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = sdk.chat.completions.create(model=MODEL, messages=asked, tools=[WEATHER_TOOL])
    (call,) = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    answered = [*asked, first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"sky": "clear"})}]
    second = sdk.chat.completions.create(model=MODEL, messages=answered, tools=[WEATHER_TOOL])
    message = second.choices[0].message
    assert second.choices[0].finish_reason == "stop" and message.content == "It is clear in Paris, 21 degrees."
    assert message.model_extra["reasoning_content"] == "The tool says the sky is clear."
    assert second.usage.completion_tokens == 7 + 7  # one token a word: the reasoning and the answer


@pytest.mark.parametrize("content", ["What is the weather in Paris?", '{"sky": "clear"} — grüße', "unmatched"])
def test_chat_body_is_exactly_a_chat_completion(scripted_url: str, content: str) -> None:
    """The answer is serialized from plain data (llm/router.py _complete): its bytes must be what the
    ChatCompletion model gives — every field, in its order, with reasoning_content as the extra field."""
    from ddx_omni.llm.schemas import ChatCompletion

    r = httpx.post(f"{scripted_url}/v1/chat/completions", timeout=30, json={
        "model": MODEL, "messages": [{"role": "user", "content": content}], "tools": [WEATHER_TOOL]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert ChatCompletion.model_validate_json(r.content).model_dump_json().encode() == r.content
    message = r.json()["choices"][0]["message"]
    assert ("reasoning_content" in message) == ("sky" in content)


def test_chat_scripted_text_streams_in_word_deltas(sdk: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Hello, my name is Ada"}]
    chunks = list(sdk.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                              stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 4 and "".join(pieces) == "Nice to meet you."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.completion_tokens == 4


def test_chat_max_tokens_cuts_the_scripted_text(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model=MODEL, max_tokens=2,
                                    messages=[{"role": "user", "content": "my name is Ada"}])
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == "Nice to "


def test_unmatched_message_gets_the_canned_call(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "something else"}])
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Berlin"}


def test_tool_not_offered_is_explained_in_text(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model=MODEL, tools=[WEATHER_TOOL],
                                    messages=[{"role": "user", "content": "please call the missing tool"}])
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    assert "no_such_tool" in r.choices[0].message.content and "get_weather" in r.choices[0].message.content


def test_responses_function_call_round_trip(sdk: openai.OpenAI) -> None:
    first = sdk.responses.create(model=MODEL, input="What is the weather in Paris?", tools=[RESPONSES_TOOL])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second = sdk.responses.create(model=MODEL, previous_response_id=first.id, tools=[RESPONSES_TOOL], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"sky": "clear"})}])
    assert second.status == "completed" and second.output_text == "It is clear in Paris, 21 degrees."
    assert second.usage.output_tokens >= 7


def test_responses_chain_follows_the_rules_in_order(sdk: openai.OpenAI) -> None:
    first = sdk.responses.create(model=MODEL, input="Hi, my name is Ada")
    second = sdk.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
    with sdk.responses.stream(model=MODEL, input="And the weather in Paris?", previous_response_id=second.id,
                              tools=[RESPONSES_TOOL]) as stream:
        deltas = [e for e in stream if e.type == "response.function_call_arguments.done"]
        third = stream.get_final_response()
    assert [first.output_text, second.output_text] == ["Nice to meet you.", "You told me before: Ada."]
    assert len(deltas) == 1 and third.output[0].type == "function_call"
    # each turn's prompt holds the chain before it (the engine counts one token a word)
    assert first.usage.input_tokens < second.usage.input_tokens < third.usage.input_tokens


def test_responses_text_streams_in_several_deltas(sdk: openai.OpenAI) -> None:
    with sdk.responses.stream(model=MODEL, input="my name is Ada") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
    assert len(deltas) == 4 and "".join(deltas) == "Nice to meet you."


def test_responses_reasoning_streams_as_a_reasoning_item(scripted_url: str) -> None:
    from tests.responses.support import check_event_order, read_sse

    events, _ = read_sse(scripted_url, {"model": MODEL, "input": [
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": '{"sky": "clear"}'}]})
    final = check_event_order(events)
    reasoning, message = final["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs")
    assert reasoning["content"][0]["text"] == "The tool says the sky is clear."
    assert message["content"][0]["text"] == "It is clear in Paris, 21 degrees."
    deltas = [e for e in events if e["type"] == "response.reasoning_text.delta"]
    assert len(deltas) == 7 and {e["output_index"] for e in deltas} == {0}


def test_health_shows_mock_mode_and_script(scripted_url: str, tmp_path: Path) -> None:
    llm = httpx.get(f"{scripted_url}/health", timeout=10).json()["components"]["llm"]
    assert llm["mode"] == "mock" and llm["mock_script"] == str(tmp_path / "script.json")


def test_toml_script_is_accepted(tmp_path: Path) -> None:
    from ddx_omni.core.settings import load_mock_script

    path = write_script(tmp_path, '[[rules]]\nmatch = "hi"\n[rules.reply]\ncontent = "hello"\n', "script.toml")
    (rule,) = load_mock_script(path)
    assert rule.match.search("say hi") and rule.reply.content == "hello"


@pytest.mark.parametrize(("content", "expected"), [
    (None, "cannot read the mock script"),
    ("[{\"match\": \"x\"", "not valid JSON"),
    (json.dumps([{"match": "(", "reply": {"content": "x"}}]), "mock script rule 0, at match"),
    (json.dumps([{"match": "x", "reply": {}}]), "needs `content`, `tool_calls` or both"),
    (json.dumps({"match": "x"}), "must be a list of rules"),
])
def test_bad_script_stops_the_start_with_exit_2(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "script.json"
    if content is not None:
        path.write_text(content)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DDX_LLM__MOCK_SCRIPT": str(path)}
    proc = subprocess.run([sys.executable, "-m", "ddx_omni.cli", "serve", "--port", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "llm.mock_script" in proc.stderr and "[llm].mock_script" in proc.stderr and expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
