"""Mock mode through the official openai SDK: the seed's canned tool call, streamed and not; registry routes."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

MODEL = "mlx-community/Qwen3-4B-Instruct-2507-4bit"
MESSAGES = [{"role": "user", "content": "What is the weather in Berlin?"}]


@pytest.fixture
def mock_url(server_factory) -> str:
    return server_factory({"auth.api_keys": ["k1"]})


@pytest.fixture
def sdk(mock_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{mock_url}/v1", api_key="k1", max_retries=0, timeout=30)


def test_canned_tool_call(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Berlin"}
    assert r.id.startswith("chatcmpl-") and r.created > 0 and r.model == MODEL
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0


def test_canned_tool_call_streamed(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model="any-name", messages=MESSAGES, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [
        (0, "get_weather", {"city": "Berlin"})]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert {c.id for c in chunks} == {chunks[0].id} and {c.model for c in chunks} == {"any-name"}


def test_stream_ends_with_done(mock_url: str) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    r = httpx.post(f"{mock_url}/v1/chat/completions", json=body, headers={"X-API-Key": "k1"}, timeout=30)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line for line in r.text.split("\n\n") if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_models_list_and_current(sdk: openai.OpenAI, mock_url: str) -> None:
    (model,) = sdk.models.list().data
    assert model.id == MODEL
    extras = model.model_dump()
    assert {k: extras[k] for k in ("family", "quantization", "context_window", "multimodal")} == {
        "family": "qwen3", "quantization": "4bit", "context_window": 262144, "multimodal": False}
    assert extras["label"] and extras["total_params_b"] == 4.0
    current = httpx.get(f"{mock_url}/v1/models/current", timeout=10).json()
    assert current == {"model_id": MODEL, "loaded": True, "last_load_ms": 0}


def test_load_in_mock_mode_is_404(mock_url: str) -> None:
    r = httpx.post(f"{mock_url}/v1/models/load", json={"model_id": MODEL}, headers={"X-API-Key": "k1"}, timeout=10)
    assert r.status_code == 404
    assert r.json()["code"] == "model_not_found" and r.json()["detail"] == "server not in real-model mode"


def test_chat_needs_the_key(mock_url: str) -> None:
    bad = openai.OpenAI(base_url=f"{mock_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert httpx.get(f"{mock_url}/v1/models", timeout=10).status_code == 200  # the registry is public


@pytest.mark.parametrize("extra,param", [({"n": 2}, "n"),
                                         ({"tool_choice": "required"}, "tool_choice"),
                                         ({"logit_bias": {"abc": 1}}, "logit_bias"),
                                         ({"messages": [{"role": "user", "content": [
                                             {"type": "input_audio", "input_audio": {"data": ""}}]}]},
                                          "messages.0.content")])
def test_invalid_options_are_422(sdk: openai.OpenAI, extra: dict, param: str) -> None:
    # (an image part is no longer one of these: it is a 400 naming the text model, tests/vision/test_chat.py)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        sdk.chat.completions.create(**{"model": MODEL, "messages": MESSAGES, **extra})
    body = err.value.body
    assert body["code"] == "request_invalid" and body["param"] == param
