"""The one prompt pipeline (llm/prompt.py): the same bad request is refused before generation on chat and on
Responses (JSON, streamed, background), in real and in mock mode, and a request's template is rendered once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import build_settings, live_server

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
FLAT_WEATHER = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
BAD_SCHEMA = {"type": "string", "minLength": 5, "maxLength": 2}  # valid JSON, unsatisfiable: llguidance refuses it
ABSENT_TOOL = "get_time"
HUGE_TOKEN_ID = 10**9

# (name, chat arguments, Responses arguments, chat param, Responses param)
BAD: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = [
    ("schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": BAD_SCHEMA}}},
     {"text": {"format": {"type": "json_schema", "name": "x", "schema": BAD_SCHEMA}}},
     "response_format", "text.format"),
    ("absent tool", {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": ABSENT_TOOL}}},
     {"tools": [FLAT_WEATHER], "tool_choice": {"type": "function", "name": ABSENT_TOOL}}, "tool_choice", "tool_choice"),
    ("forced without tools", {"tool_choice": "required"}, {"tool_choice": "required"}, "tool_choice", "tool_choice"),
]
REAL_ONLY: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = [
    ("logit_bias id", {"logit_bias": {str(HUGE_TOKEN_ID): 5}}, {}, "logit_bias", ""),
    ("context window", {"max_tokens": 5000}, {"max_output_tokens": 5000}, "messages", "input"),
]


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(value) for value in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE))


@pytest.fixture(scope="module")
def mock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_server(build_settings(tmp_path_factory.mktemp("pipeline_mock"))) as url:
        yield url


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=60, max_retries=0)


def _refused(call: Callable[[], Any]) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as refused:
        result = call()
        for _ in result if isinstance(result, openai.Stream) else ():  # a stream that opened would fail here
            pass
    return refused.value


def _check_chat(url: str, chat: dict[str, Any], param: str) -> None:
    client = _client(url)
    for stream in (False, True):
        error = _refused(lambda stream=stream: client.chat.completions.create(  # type: ignore[misc]
            model=None, messages=[{"role": "user", "content": "Weather in Berlin?"}], stream=stream,
            **{"max_tokens": 4, **chat}))  # type: ignore[call-overload]
        assert error.status_code == 422 and error.body["param"] == param, error.body  # type: ignore[index]


def _check_responses(url: str, responses: dict[str, Any], param: str) -> None:
    """400 invalid_request_error on every mode, and nothing stored: the conversation stays empty."""
    client = _client(url)
    conversation = client.conversations.create()
    for mode in ({}, {"stream": True}, {"background": True}):
        error = _refused(lambda mode=mode: client.responses.create(  # type: ignore[misc]
            input="Weather in Berlin?", conversation=conversation.id, **mode, **responses))
        assert error.status_code == 400, (mode, error.body)
        assert error.body["type"] == "invalid_request_error" and error.body["param"] == param, error.body  # type: ignore[index]
    assert client.conversations.items.list(conversation.id).data == []


@pytest.mark.parametrize(("name", "chat", "responses", "chat_param", "responses_param"), BAD + REAL_ONLY,
                         ids=[case[0] for case in BAD + REAL_ONLY])
def test_bad_input_is_refused_before_generation(real_server: str, name: str, chat: dict[str, Any],
                                                responses: dict[str, Any], chat_param: str,
                                                responses_param: str) -> None:
    generated = _metric(real_server, "ddx_llm_tokens_generated_total")
    _check_chat(real_server, chat, chat_param)
    if responses:  # Responses has no logit_bias
        _check_responses(real_server, responses, responses_param)
    assert _metric(real_server, "ddx_llm_tokens_generated_total") == generated  # no generation even began


@pytest.mark.parametrize(("name", "chat", "responses", "chat_param", "responses_param"), BAD,
                         ids=[case[0] for case in BAD])
def test_mock_mode_refuses_the_same(mock_url: str, name: str, chat: dict[str, Any], responses: dict[str, Any],
                                    chat_param: str, responses_param: str) -> None:
    _check_chat(mock_url, chat, chat_param)
    _check_responses(mock_url, responses, responses_param)


def test_a_request_renders_its_template_once(real_server: str) -> None:
    client = _client(real_server)
    messages = [{"role": "user", "content": "Weather in Berlin?"}]

    def renders(call: Callable[[], Any]) -> float:
        before = _metric(real_server, "ddx_llm_prompt_renders_total")
        call()
        return _metric(real_server, "ddx_llm_prompt_renders_total") - before

    assert renders(lambda: client.chat.completions.create(model=None, messages=messages, max_tokens=3)) == 1  # type: ignore[arg-type]
    assert renders(lambda: list(client.chat.completions.create(model=None, messages=messages, max_tokens=3,  # type: ignore[arg-type]
                                                               stream=True, tools=[WEATHER]))) == 1  # type: ignore[list-item]
    assert renders(lambda: client.responses.create(input="Weather in Berlin?", max_output_tokens=3)) == 1
    assert renders(lambda: client.responses.create(input="Weather?", max_output_tokens=3, tools=[FLAT_WEATHER],  # type: ignore[list-item]
                                                   text={"format": {"type": "json_object"}})) == 1
