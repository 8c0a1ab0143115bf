"""POST /v1/completions with the official openai SDK, on the tiny real model: raw text, streams, echo, logprobs."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest


def _ask(tiny_model_dir: Any, **kw: Any) -> dict[str, Any]:
    return {"model": str(tiny_model_dir), "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0, **kw}


def test_completion_is_raw_text_without_the_chat_template(client: openai.OpenAI, tiny_model_dir: Any,
                                                          tokenizer: Any) -> None:
    done = client.completions.create(**_ask(tiny_model_dir))
    assert done.object == "text_completion" and done.id.startswith("cmpl-") and len(done.choices) == 1
    choice = done.choices[0]
    assert choice.finish_reason == "length" and choice.text and choice.logprobs is None
    # no template: the prompt is the bare text's tokens (a chat prompt would add the role markers)
    assert done.usage.prompt_tokens == len(tokenizer.encode("Once upon a time"))
    assert done.usage.completion_tokens == 12
    chat = client.chat.completions.create(model=str(tiny_model_dir), max_tokens=1,
                                          messages=[{"role": "user", "content": "Once upon a time"}])
    assert chat.usage.prompt_tokens > done.usage.prompt_tokens
    # the same tokens as a token-id prompt continue the same way (greedy)
    ids = tokenizer.encode("Once upon a time")
    assert client.completions.create(**_ask(tiny_model_dir, prompt=ids)).choices[0].text == choice.text


def test_stream_matches_the_whole_answer(client: openai.OpenAI, tiny_model_dir: Any) -> None:
    whole = client.completions.create(**_ask(tiny_model_dir)).choices[0].text
    chunks = list(client.completions.create(**_ask(tiny_model_dir), stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert all(c.object == "text_completion" for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


def test_echo_prepends_the_prompt(client: openai.OpenAI, tiny_model_dir: Any) -> None:
    plain = client.completions.create(**_ask(tiny_model_dir)).choices[0].text
    echoed = client.completions.create(**_ask(tiny_model_dir, echo=True)).choices[0].text
    assert echoed == "Once upon a time" + plain
    streamed = list(client.completions.create(**_ask(tiny_model_dir, echo=True), stream=True))
    assert streamed[0].choices[0].text == "Once upon a time"
    assert "".join(c.choices[0].text for c in streamed) == echoed


def test_logprobs_int_gives_the_legacy_columns(client: openai.OpenAI, tiny_model_dir: Any) -> None:
    done = client.completions.create(**_ask(tiny_model_dir, logprobs=3))
    lp = done.choices[0].logprobs
    assert lp is not None and len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 12
    assert "".join(lp.tokens) == done.choices[0].text
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0])
    assert all(len(top) <= 3 and top for top in lp.top_logprobs)
    # greedy: the chosen token is the most likely one (the legacy format keys alternatives by text, so byte
    # tokens that decode alike to U+FFFD collapse into one key: those are left out)
    clear = [i for i, token in enumerate(lp.tokens) if "\ufffd" not in token]
    assert clear
    for i in clear:
        top = lp.top_logprobs[i]
        assert top[lp.tokens[i]] == pytest.approx(lp.token_logprobs[i])
        assert lp.token_logprobs[i] >= max(top.values()) - 1e-6
    streamed = list(client.completions.create(**_ask(tiny_model_dir, logprobs=0), stream=True))
    tokens = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    assert tokens == lp.tokens


def test_stop_string_ends_the_text(client: openai.OpenAI, tiny_model_dir: Any) -> None:
    whole = client.completions.create(**_ask(tiny_model_dir)).choices[0].text
    stop = whole[len(whole) // 2:len(whole) // 2 + 2]
    cut = client.completions.create(**_ask(tiny_model_dir, stop=[stop])).choices[0]
    assert cut.text == whole[:whole.index(stop)] and cut.finish_reason == "stop"


@pytest.mark.parametrize("extra, param", [({"suffix": "the end"}, "suffix"), ({"n": 2}, "n"),
                                          ({"prompt": ["a", "b"]}, "prompt"), ({"echo": True, "logprobs": 1}, "echo"),
                                          ({"prompt": [10 ** 9]}, "prompt")])
def test_refused_clearly(client: openai.OpenAI, tiny_model_dir: Any, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.completions.create(**{**_ask(tiny_model_dir), **extra})
    assert caught.value.body["param"] == param


def test_context_overflow(real_server: str, tiny_model_dir: Any) -> None:
    response = httpx.post(f"{real_server}/v1/completions", timeout=30,
                          json=_ask(tiny_model_dir, prompt="word " * 5000, max_tokens=10))
    assert response.status_code == 422 and response.json()["error"]["code"] == "context_too_long"


def test_mock_mode_script_answers_completions(server_factory: Any, tmp_path: Any) -> None:
    script = tmp_path / "script.json"
    script.write_text('[{"match": "capital", "reply": {"content": "Paris is the capital."}}]')
    url = server_factory({"llm.mock_script": str(script)})
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    done = client.completions.create(model="m", prompt="The capital of France?", max_tokens=50)
    assert done.choices[0].text == "Paris is the capital." and done.choices[0].finish_reason == "stop"
