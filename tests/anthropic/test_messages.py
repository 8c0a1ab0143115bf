"""POST /v1/messages with the official anthropic SDK: messages, streams, tools, token counts, errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import anthropic
from ddx_omni.llm.engine import ChatParams, ToolCall
from tests.responses.support import ScriptedEngine

from .conftest import sdk

WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def read_events(url: str, body: dict[str, Any], path: str = "/v1/messages") -> list[tuple[str, dict[str, Any]]]:
    """The raw SSE stream: (event name, data) pairs; every frame must have both lines."""
    with httpx.stream("POST", f"{url}{path}", json={**body, "stream": True}, timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    frames = []
    for block in (b for b in raw.split("\n\n") if b):
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        event = json.loads(data[len("data: "):])
        assert event["type"] == name[len("event: "):]
        frames.append((event["type"], event))
    return frames


def check_grammar(frames: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """message_start first, blocks 0, 1, 2… each start → deltas → stop, then message_delta, message_stop."""
    kinds = [k for k, _ in frames if k != "ping"]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    blocks: list[dict[str, Any]] = []
    open_index = None
    for kind, event in frames[1:-2]:
        if kind == "content_block_start":
            assert open_index is None and event["index"] == len(blocks)
            open_index = event["index"]
            blocks.append(event["content_block"])
        elif kind in ("content_block_delta", "content_block_stop"):
            assert event["index"] == open_index
            if kind == "content_block_stop":
                open_index = None
        else:
            assert kind == "ping", kind
    assert open_index is None
    return blocks


def test_create_returns_an_anthropic_message(scripted: Any) -> None:
    url, engine = scripted()
    message = sdk(url).messages.create(model="scripted-model", max_tokens=64, system="Be brief.",
                                       messages=[{"role": "user", "content": "hello there"}])
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Echo: hello there"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.model == "scripted-model"
    assert message.usage.input_tokens == 4 + 2 + 4 + 2 and message.usage.output_tokens == 3
    assert message.usage.cache_read_input_tokens == 0
    assert engine.prompts[0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]


def test_stream_helper_text_and_final_message(scripted: Any) -> None:
    url, _ = scripted()
    with sdk(url).messages.stream(model="m", max_tokens=64,
                                  messages=[{"role": "user", "content": "one two three"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["Echo:", " one", " two", " three"]
    assert final.content[0].text == "Echo: one two three" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4


def test_stream_event_sequence_and_ping(scripted: Any) -> None:
    url, _ = scripted()
    frames = read_events(url, {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "a b"}]})
    assert [k for k, _ in frames] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                      "content_block_delta", "content_block_delta", "content_block_stop",
                                      "message_delta", "message_stop"]
    start = frames[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 6 and start["usage"]["output_tokens"] == 0
    delta = frames[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 3 and delta["usage"]["input_tokens"] == 6


def test_pings_while_the_engine_is_silent(scripted: Any) -> None:
    url, _ = scripted(ScriptedEngine(delay=0.4), {"anthropic.ping_interval_s": 0.1})
    frames = read_events(url, {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}]})
    pings_before_text = [k for k, _ in frames].index("content_block_start") - 1
    assert pings_before_text >= 2  # the one after message_start, then at least one while waiting
    check_grammar(frames)


def test_tool_use_round_trip_with_the_mock_engine(scripted: Any) -> None:
    """Scripted: a tool call while the user spoke last, a sentence on the tool's result."""
    url, engine = scripted()
    client = sdk(url)
    first = client.messages.create(model="m", max_tokens=64, tools=[WEATHER],
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.id.startswith("toolu_") and call.name == "get_weather"
    assert call.input == {"city": "Paris"}
    assert engine.params[0].tools == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city", "parameters": WEATHER["input_schema"]}}]
    second = client.messages.create(model="m", max_tokens=64, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
    assert second.content[0].text == "The weather is sunny." and second.stop_reason == "end_turn"
    history = engine.prompts[1]
    assert history[1]["tool_calls"][0]["id"] == call.id
    assert json.loads(history[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert history[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}


def test_tool_use_streams_as_input_json_delta(scripted: Any) -> None:
    url, _ = scripted()
    frames = read_events(url, {"model": "m", "max_tokens": 64, "tools": [WEATHER],
                               "messages": [{"role": "user", "content": "Weather?"}]})
    blocks = check_grammar(frames)
    assert blocks[0]["type"] == "tool_use" and blocks[0]["input"] == {} and blocks[0]["id"].startswith("toolu_")
    partial = "".join(e["delta"]["partial_json"] for k, e in frames if k == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert frames[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_result_blocks_is_error_and_tolerated_blocks(scripted: Any) -> None:
    url, engine = scripted()
    sdk(url).messages.create(model="m", max_tokens=16, extra_body={"speed": "standard", "unknown_field": 1},
                             system=[{"type": "text", "text": "S1", "cache_control": {"type": "ephemeral"}},
                                     {"type": "text", "text": "S2"}],
                             messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
             "content": [{"type": "text", "text": "no such file"}, {"type": "tool_reference", "tool_name": "x"}]},
            {"type": "text", "text": "go on"}, {"type": "some_future_block", "x": 1}]}])
    assert engine.prompts[0] == [
        {"role": "system", "content": "S1\nS2"}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": "calling", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": '{"path": "a"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: no such file"},
        {"role": "user", "content": "go on"}]


def test_tool_choice_and_disable_parallel(scripted: Any) -> None:
    def two_calls(params: ChatParams) -> list[Any]:
        return [ToolCall("call_a", "get_weather", '{"city":"A"}'), ToolCall("call_b", "get_weather", '{"city":"B"}')]

    url, engine = scripted(ScriptedEngine(reply=two_calls))
    client = sdk(url)
    both = client.messages.create(model="m", max_tokens=16, tools=[WEATHER], tool_choice={"type": "any"},
                                  messages=[{"role": "user", "content": "x"}])
    assert [b.input["city"] for b in both.content] == ["A", "B"] and engine.params[0].tool_choice == "required"
    one = client.messages.create(model="m", max_tokens=16, tools=[WEATHER],
                                 tool_choice={"type": "tool", "name": "get_weather",
                                              "disable_parallel_tool_use": True},
                                 messages=[{"role": "user", "content": "x"}])
    assert [b.input["city"] for b in one.content] == ["A"]
    assert engine.params[1].tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(anthropic.BadRequestError, match="not in `tools`"):
        client.messages.create(model="m", max_tokens=16, tools=[WEATHER], tool_choice={"type": "tool", "name": "x"},
                               messages=[{"role": "user", "content": "x"}])


def test_max_tokens_stop_reason_and_clamp_to_the_context(scripted: Any) -> None:
    url, engine = scripted(ScriptedEngine(context_window=64))
    client = sdk(url)
    cut = client.messages.create(model="m", max_tokens=2, messages=[{"role": "user", "content": "a b c d"}])
    assert cut.stop_reason == "max_tokens" and cut.content[0].text == "Echo: a"
    # Claude Code's max_tokens: 32000 beside a prompt that fits: clamped to what the window leaves, not refused.
    ok = client.messages.create(model="m", max_tokens=32000, messages=[{"role": "user", "content": "a b"}])
    assert ok.stop_reason == "end_turn" and engine.params[-1].max_tokens == 64 - 6


def test_prompt_too_long_is_the_wording_claude_code_compacts_on(scripted: Any) -> None:
    url, _ = scripted(ScriptedEngine(context_window=64))
    words = " ".join(["w"] * 80)
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(url).messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": words}])
    assert caught.value.status_code == 400
    body = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == "prompt is too long: 84 tokens > 63 maximum"
    # streaming too: refused before the stream starts
    response = httpx.post(f"{url}/v1/messages", json={"model": "m", "max_tokens": 10, "stream": True,
                                                      "messages": [{"role": "user", "content": words}]}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("prompt is too long: 84")


def test_mid_stream_error_is_an_error_event(scripted: Any) -> None:
    url, _ = scripted(ScriptedEngine(fail_after=1))
    frames = read_events(url, {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "a b"}]})
    assert frames[-1][0] == "error" and frames[-1][1]["error"]["type"] == "api_error"
    with pytest.raises(anthropic.APIStatusError), sdk(url).messages.stream(
            model="m", max_tokens=64, messages=[{"role": "user", "content": "a b"}]) as stream:
        stream.get_final_message()


def test_count_tokens_and_the_anthropic_prefix(scripted: Any) -> None:
    url, _ = scripted()
    for base in (url, f"{url}/anthropic"):
        count = sdk(base).messages.count_tokens(model="m", system="s",
                                                messages=[{"role": "user", "content": "one two"}])
        assert count.input_tokens == 5 + 6
    beta = httpx.post(f"{url}/v1/messages/count_tokens?beta=true", timeout=30,
                      headers={"anthropic-version": "2023-06-01", "anthropic-beta": "a,b"},
                      json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert beta.status_code == 200 and beta.json() == {"input_tokens": 5}


def test_bad_request_is_an_anthropic_400(scripted: Any) -> None:
    url, _ = scripted()
    response = httpx.post(f"{url}/anthropic/v1/messages", json={"model": "m", "messages": []}, timeout=30)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


def test_authentication_by_either_header(scripted: Any) -> None:
    url, _ = scripted(None, {"auth.api_keys": ["k1"]})
    with pytest.raises(anthropic.AuthenticationError):
        sdk(url, api_key="wrong").messages.create(model="m", max_tokens=8,
                                                  messages=[{"role": "user", "content": "x"}])
    assert sdk(url, api_key="k1").messages.create(model="m", max_tokens=8,
                                                  messages=[{"role": "user", "content": "x"}]).content
    assert sdk(url, api_key=None, auth_token="k1").messages.count_tokens(
        model="m", messages=[{"role": "user", "content": "x"}]).input_tokens == 5
    old_style = httpx.post(f"{url}/v1/messages", headers={"x-api-key": "k1", "anthropic-version": "2023-06-01"},
                           json={"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
                           timeout=30)
    assert old_style.status_code == 200 and old_style.headers["request-id"]
    missing = httpx.post(f"{url}/v1/messages", json={}, timeout=30)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"


def test_models_list_in_anthropic_shape(scripted: Any) -> None:
    url, _ = scripted()
    page = sdk(f"{url}/anthropic").models.list()
    assert [m.id for m in page.data] == ["scripted-model"] and page.data[0].type == "model"
    assert page.has_more is False and page.first_id == "scripted-model"
    assert sdk(f"{url}/anthropic").models.retrieve("scripted-model").display_name == "scripted-model"
    with pytest.raises(anthropic.NotFoundError):
        sdk(f"{url}/anthropic").models.retrieve("nope")


def test_default_mock_mode_answers_with_its_canned_tool_call(server_factory: Any) -> None:
    url = server_factory()
    message = sdk(url).messages.create(model="claude-sonnet-4-5", max_tokens=32000, tools=[WEATHER],
                                       messages=[{"role": "user", "content": "hi"}])
    assert message.stop_reason == "tool_use" and message.content[0].input == {"city": "Berlin"}


def test_scripted_mock_mode_gives_thinking_text_and_tool_use_blocks(server_factory: Any, tmp_path: Any) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"match": "weather", "reply": {
        "reasoning": "The user wants the weather.", "content": "Let me look.",
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}}]))
    url = server_factory({"llm.mock_script": str(script)})
    frames = read_events(url, {"model": "m", "max_tokens": 100, "tools": [WEATHER],
                               "messages": [{"role": "user", "content": "weather in Oslo?"}]})
    blocks = check_grammar(frames)
    assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use"]
    with sdk(url).messages.stream(model="m", max_tokens=100, tools=[WEATHER],
                                  messages=[{"role": "user", "content": "weather in Oslo?"}]) as stream:
        final = stream.get_final_message()
    thinking, text, call = final.content
    assert thinking.thinking == "The user wants the weather." and thinking.signature.startswith("ddx-")
    assert text.text == "Let me look." and call.input == {"city": "Oslo"} and final.stop_reason == "tool_use"


def test_a_client_that_hangs_up_stops_the_generation(scripted: Any) -> None:
    from tests.conftest import wait_for

    words = " ".join(f"w{i}" for i in range(200))
    url, engine = scripted(ScriptedEngine(delay=0.05))
    body = {"model": "m", "max_tokens": 500, "stream": True, "messages": [{"role": "user", "content": words}]}
    with httpx.stream("POST", f"{url}/v1/messages", json=body, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                break
    wait_for(lambda: engine.outcomes == ["aborted"], timeout=10)
    url2, engine2 = scripted(ScriptedEngine(delay=0.05))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url2}/v1/messages", json={**body, "stream": False}, timeout=0.5)
    wait_for(lambda: engine2.outcomes == ["aborted"], timeout=10)
