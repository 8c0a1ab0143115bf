"""truncation: `disabled` answers an overflow with 400 context_length_exceeded (OpenAI's code); `auto` drops
the oldest items."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from .conftest import sdk
from .support import ScriptedEngine, count_tokens


def build_chain(client: openai.OpenAI, turns: int) -> str:
    previous = None
    for n in range(turns):
        previous = client.responses.create(model="m", input=f"turn {n} " + "word " * 10,
                                           previous_response_id=previous, truncation="auto").id
    assert previous is not None
    return previous


def test_disabled_truncation_rejects_an_overflow(serve: Any) -> None:
    engine = ScriptedEngine(context_window=120)
    client = sdk(serve(engine))
    previous = build_chain(client, 3)  # ~96 tokens of history
    calls = len(engine.prompts)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="one more " + "word " * 20, previous_response_id=previous)
    assert info.value.code == "context_length_exceeded" and "truncation" in info.value.message
    assert len(engine.prompts) == calls  # nothing was generated
    with pytest.raises(openai.BadRequestError):  # max_output_tokens is reserved out of the window
        client.responses.create(model="m", input="short", previous_response_id=previous, max_output_tokens=60)


def test_auto_truncation_drops_the_oldest_items(serve: Any) -> None:
    engine = ScriptedEngine(context_window=120)
    client = sdk(serve(engine))
    previous = build_chain(client, 3)
    response = client.responses.create(model="m", input="final question " + "word " * 20,
                                       previous_response_id=previous, truncation="auto", instructions="keep me",
                                       max_output_tokens=30)
    prompt = engine.prompts[-1]
    assert response.status == "completed" and response.truncation == "auto"
    assert prompt[0] == {"role": "system", "content": "keep me"}  # instructions are never dropped
    assert prompt[-1]["content"].startswith("final question")
    assert not any(m["content"].startswith("turn 0") for m in prompt)  # the oldest went first
    assert count_tokens(prompt) <= 120 - 30 and len(prompt) >= 3  # max_output_tokens is reserved
    # the most recent history that fits is kept, in order
    assert prompt[-2]["content"].startswith("Echo: turn 2")


def test_auto_truncation_never_starts_with_an_orphan_tool_output(serve: Any) -> None:
    engine = ScriptedEngine(context_window=80)
    client = sdk(serve(engine))
    big_arguments = '{"q": "' + "a " * 80 + '"}'
    client.responses.create(model="m", truncation="auto", input=[
        {"role": "user", "content": "start"},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": big_arguments},
        {"type": "function_call_output", "call_id": "c1", "output": "result"},
        {"role": "user", "content": "the question"},
    ])
    assert engine.prompts[-1] == [{"role": "user", "content": "the question"}]


def test_auto_truncation_cannot_drop_the_last_item(serve: Any) -> None:
    client = sdk(serve(ScriptedEngine(context_window=30)))
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="word " * 40, truncation="auto")
    assert info.value.code == "context_length_exceeded"
