"""response_format json_object / json_schema enforced by constrained decoding on the tiny (random) model."""

from __future__ import annotations

import json

import openai
import pytest

pytestmark = pytest.mark.slow
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["ok", "n"],
          "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0, "maximum": 9}}}


def as_schema(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_json_schema_answers_parse_and_validate(client: openai.OpenAI, seed: int) -> None:
    r = client.chat.completions.create(model=None, messages=[{"role": "user", "content": f"answer {seed}"}],  # type: ignore[arg-type]
                                       temperature=1.0, seed=seed, max_tokens=40, response_format=as_schema(SCHEMA))
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"ok", "n"} and isinstance(value["ok"], bool) and value["n"] in range(10)
    assert r.choices[0].finish_reason == "stop"


def test_json_schema_streamed(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=None, messages=[{"role": "user", "content": "stream it"}],  # type: ignore[arg-type]
                                                 temperature=1.0, seed=5, max_tokens=40, stream=True,
                                                 response_format=as_schema(SCHEMA)))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert set(json.loads(text)) == {"ok", "n"}


def test_json_object_closes_where_unconstrained_output_would_not(client: openai.OpenAI, tokenizer) -> None:
    (close,) = tokenizer.encode("}", add_special_tokens=False)
    kw = {"model": None, "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 20,
          "logit_bias": {str(close): 30}}
    free = client.chat.completions.create(**kw)  # type: ignore[call-overload]
    assert free.choices[0].message.content.startswith("}}}")  # the bias alone writes braces forever
    r = client.chat.completions.create(**kw, response_format={"type": "json_object"})  # type: ignore[call-overload]
    assert json.loads(r.choices[0].message.content) == {} and r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("response_format", [
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}},
    {"type": "json_schema", "json_schema": {"name": "x"}},
    {"type": "yaml"},
])
def test_unusable_response_format_is_422(client: openai.OpenAI, response_format: dict) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(model=None, messages=[{"role": "user", "content": "hi"}],  # type: ignore[arg-type]
                                       response_format=response_format)  # type: ignore[arg-type]
    assert err.value.body["code"] == "request_invalid" and err.value.body["param"] == "response_format"
