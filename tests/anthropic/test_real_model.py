"""The Messages API on a real MLX model (the tiny scripted `tool` preset): thinking blocks, tool use, 404s."""

from __future__ import annotations

import json
from typing import Any

import pytest

import anthropic

from .conftest import sdk
from .test_messages import WEATHER, check_grammar, read_events


def test_thinking_and_tool_use_from_the_model(tool_server: str, tool_model_dir: Any) -> None:
    client = sdk(tool_server)
    model = str(tool_model_dir)
    first = client.messages.create(model=model, max_tokens=200, tools=[WEATHER], extra_body={"temperature": 0},
                                   messages=[{"role": "user", "content": "Weather in Berlin?"}])
    assert [b.type for b in first.content] == ["thinking", "tool_use"], first.content
    thinking, call = first.content
    assert thinking.thinking == "The_user_asks_for_the_weather:_call_get_weather." and thinking.signature
    assert call.name == "get_weather" and call.input == {"city": "Berlin"} and call.id.startswith("toolu_")
    assert first.stop_reason == "tool_use" and first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    # the round trip: the model sees the tool's result and (being scripted) calls again
    with client.messages.stream(model=model, max_tokens=200, tools=[WEATHER], extra_body={"temperature": 0}, messages=[
            {"role": "user", "content": "Weather in Berlin?"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12 C"}]},
    ]) as stream:
        second = stream.get_final_message()
    assert [b.type for b in second.content] == ["thinking", "tool_use"] and second.stop_reason == "tool_use"
    # the second prompt begins with the first: the engine's KV cache reuse is reported as cache reads
    assert second.usage.cache_read_input_tokens > 0


def test_thinking_block_stream_ends_with_a_signature(tool_server: str, tool_model_dir: Any) -> None:
    frames = read_events(tool_server, {"model": str(tool_model_dir), "max_tokens": 200, "tools": [WEATHER],
                                       "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]})
    blocks = check_grammar(frames)
    assert blocks[0] == {"type": "thinking", "thinking": "", "signature": ""} and blocks[1]["type"] == "tool_use"
    first_block = [(k, e) for k, e in frames if e.get("index") == 0]
    assert first_block[-2][1]["delta"]["type"] == "signature_delta" and first_block[-2][1]["delta"]["signature"]
    assert first_block[-1][0] == "content_block_stop"
    partial = "".join(e["delta"].get("partial_json", "") for k, e in frames if e.get("index") == 1
                      and k == "content_block_delta")
    assert json.loads(partial) == {"city": "Berlin"}


def test_thinking_disabled_hides_the_reasoning(tool_server: str, tool_model_dir: Any) -> None:
    message = sdk(tool_server).messages.create(model=str(tool_model_dir), max_tokens=200, tools=[WEATHER],
                                               thinking={"type": "disabled"}, extra_body={"temperature": 0},
                                               messages=[{"role": "user", "content": "Hi"}])
    assert [b.type for b in message.content] == ["tool_use"]


def test_stop_sequence_is_reported(real_server: str, tiny_model_dir: Any) -> None:
    """Greedy decoding is deterministic: a word from the middle of the free answer, as a stop sequence, ends it."""
    client = sdk(real_server)
    ask = {"model": str(tiny_model_dir), "max_tokens": 40, "extra_body": {"temperature": 0},
           "messages": [{"role": "user", "content": "Tell me a story"}]}
    free = client.messages.create(**ask).content[0].text
    assert len(free) > 10, free
    stop = free[len(free) // 2:len(free) // 2 + 3]
    cut = client.messages.create(**ask, stop_sequences=[stop])
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert cut.content[0].text == free[:free.index(stop)]


def test_unknown_model_is_a_not_found_error(tool_server: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk(tool_server).messages.create(model="claude-nope", max_tokens=8,
                                         messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_context_overflow_on_the_real_tokenizer(tool_server: str, tool_model_dir: Any) -> None:
    window = json.loads((tool_model_dir / "config.json").read_text()).get("max_position_embeddings")
    with pytest.raises(anthropic.BadRequestError, match=r"^Error code: 400 .*prompt is too long: \d+ tokens > "
                                                        rf"{window - 1} maximum"):
        sdk(tool_server).messages.create(model=str(tool_model_dir), max_tokens=8,
                                         messages=[{"role": "user", "content": "weather " * (window + 10)}])
