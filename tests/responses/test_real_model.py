"""Real mode on the tiny MLX model: a chain's prompt really contains the earlier turns."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

from .conftest import sdk
from .support import check_event_order, read_sse

pytestmark = pytest.mark.slow


def test_chain_prompt_grows_and_equals_the_explicit_history(server_factory: Any, tiny_model_dir: Path) -> None:
    url = server_factory({"llm.use_real_model": True, "llm.model": str(tiny_model_dir)})
    client = sdk(url)
    model = str(tiny_model_dir)
    turns = ["Hello there, how are you?", "Tell me about the weather.", "And tomorrow?"]
    chain = []
    previous = None
    for text in turns:
        response = client.responses.create(model=model, input=text, previous_response_id=previous,
                                           max_output_tokens=6, temperature=0)
        assert response.status in ("completed", "incomplete") and response.usage.output_tokens > 0
        chain.append(response)
        previous = response.id
    counts = [r.usage.input_tokens for r in chain]
    assert counts[0] < counts[1] < counts[2]
    # growth covers the earlier turn's output too, not only the new input
    assert counts[1] - counts[0] > chain[0].usage.output_tokens

    # the same conversation sent in full, statelessly, costs exactly the same prompt
    history: list[dict[str, Any]] = []
    for text, response in zip(turns[:2], chain[:2], strict=True):
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": response.output_text}]
    explicit = client.responses.create(model=model, input=[*history, {"role": "user", "content": turns[2]}],
                                       max_output_tokens=1, store=False)
    assert explicit.usage.input_tokens == counts[2]


def test_real_stream_follows_the_event_grammar(server_factory: Any, tiny_model_dir: Path) -> None:
    url = server_factory({"llm.use_real_model": True, "llm.model": str(tiny_model_dir)})
    events, _ = read_sse(url, {"model": str(tiny_model_dir), "input": "Write something.", "max_output_tokens": 8})
    final = check_event_order(events)
    assert final["status"] in ("completed", "incomplete") and final["usage"]["output_tokens"] > 0
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "".join(p["text"] for item in final["output"] if item["type"] == "message"
                             for p in item["content"])


@pytest.fixture(scope="module")
def tool_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model scripted (scripts/make_model.py, preset `tool`) to answer with get_weather(Berlin)."""
    spec = importlib.util.spec_from_file_location("ddx_make_model_responses", REPO / "scripts" / "make_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model(tmp_path_factory.mktemp("tool_model"), preset="tool", seed=0)


def test_real_function_call_round_trip(server_factory: Any, tool_model_dir: Path) -> None:
    client = sdk(server_factory({"llm.use_real_model": True, "llm.model": str(tool_model_dir)}))
    model = str(tool_model_dir)
    tools = [{"type": "function", "name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    first = client.responses.create(model=model, input="Weather in Berlin?", tools=tools, max_output_tokens=40)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Berlin"}
    assert calls[0].id.startswith("fc_") and calls[0].call_id
    second = client.responses.create(model=model, tools=tools, previous_response_id=first.id, max_output_tokens=40,
                                     input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                             "output": "sunny, 21 C"}])
    # the replayed call and its output are in the prompt: it grew by more than the new output item alone
    assert second.usage.input_tokens > first.usage.input_tokens + 5
    assert second.status in ("completed", "incomplete")
