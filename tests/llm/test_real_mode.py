"""Real mode on the tiny MLX model (random weights) through the official openai SDK: plumbing, not prose."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import wait_for

from .conftest import EOS_BIAS

pytestmark = pytest.mark.slow
HI = [{"role": "user", "content": "Hello there, how are you?"}]


def greedy(client: openai.OpenAI, eos_id: int, **kw):
    kw.setdefault("messages", HI)
    return client.chat.completions.create(model=None, temperature=0, logit_bias={str(eos_id): EOS_BIAS}, **kw)  # type: ignore[arg-type]


def stream_text(client: openai.OpenAI, eos_id: int, **kw) -> tuple[str, list]:
    kw.setdefault("messages", HI)
    chunks = list(client.chat.completions.create(model=None, temperature=0, logit_bias={str(eos_id): EOS_BIAS},  # type: ignore[arg-type]
                                                 stream=True, **kw))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def metric(url: str, name: str, model: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(rf'^{name}\{{model="{re.escape(model)}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_non_stream_runs_to_max_tokens(client: openai.OpenAI, eos_id: int, tiny_model_dir: Path) -> None:
    r = greedy(client, eos_id, max_tokens=12)
    assert r.choices[0].finish_reason == "length"
    assert isinstance(r.choices[0].message.content, str) and r.choices[0].message.content
    assert r.model == str(tiny_model_dir)
    assert r.usage.completion_tokens == 12 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12
    assert r.usage.prompt_tokens_details.cached_tokens == 0


def test_stream_matches_non_stream_and_reports_usage(client: openai.OpenAI, eos_id: int) -> None:
    whole = greedy(client, eos_id, max_tokens=16).choices[0].message.content
    text, chunks = stream_text(client, eos_id, max_tokens=16, stream_options={"include_usage": True})
    assert text == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16


def test_max_completion_tokens_is_honoured(client: openai.OpenAI, eos_id: int) -> None:
    r = greedy(client, eos_id, max_completion_tokens=5)
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"


def test_stop_string_is_trimmed_plain_and_streamed(client: openai.OpenAI, eos_id: int) -> None:
    full = greedy(client, eos_id, max_tokens=40).choices[0].message.content
    # a stop string from the middle of what the model says greedily
    middle = full[len(full) // 2:]
    stop = next(middle[i:i + 2] for i in range(len(middle) - 1)
                if middle[i:i + 2].strip() and "\ufffd" not in middle[i:i + 2])
    expected = full[:full.index(stop)]
    r = greedy(client, eos_id, max_tokens=40, stop=[stop, "never-said-xyz"])
    assert r.choices[0].message.content == expected and r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < 40
    text, chunks = stream_text(client, eos_id, max_tokens=40, stop=stop)
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_logit_bias_forces_a_token(client: openai.OpenAI, eos_id: int, tokenizer) -> None:
    (token,) = tokenizer.encode("Berlin", add_special_tokens=False)
    r = client.chat.completions.create(model=None, messages=HI, max_tokens=6, temperature=1.0, seed=3,  # type: ignore[arg-type]
                                       logit_bias={str(token): 100, str(eos_id): EOS_BIAS})
    assert r.choices[0].message.content == "Berlin" * 6


def test_seed_makes_sampling_repeatable(client: openai.OpenAI, eos_id: int) -> None:
    def sample(seed: int) -> str:
        return client.chat.completions.create(model=None, messages=HI, max_tokens=20, temperature=1.0, seed=seed,  # type: ignore[arg-type]
                                              logit_bias={str(eos_id): EOS_BIAS}).choices[0].message.content
    assert sample(11) == sample(11)
    assert sample(11) != sample(12)


def test_logprobs_of_greedy_tokens(client: openai.OpenAI, eos_id: int) -> None:
    r = greedy(client, eos_id, max_tokens=4, logprobs=True, top_logprobs=3)
    entries = r.choices[0].logprobs.content
    assert len(entries) == 4
    for e in entries:
        assert len(e.top_logprobs) == 3 and e.logprob <= 0
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
        assert e.token == e.top_logprobs[0].token and e.logprob == pytest.approx(e.top_logprobs[0].logprob)
    assert "".join(e.token for e in entries) == r.choices[0].message.content


def test_penalties_change_greedy_output(client: openai.OpenAI, eos_id: int) -> None:
    plain = greedy(client, eos_id, max_tokens=30).choices[0].message.content
    for kw in ({"presence_penalty": 2.0}, {"frequency_penalty": 2.0}, {"extra_body": {"repetition_penalty": 3.0}}):
        r = greedy(client, eos_id, max_tokens=30, **kw)
        assert r.usage.completion_tokens == 30
        assert r.choices[0].message.content != plain, kw


def test_context_too_long_before_generation(client: openai.OpenAI, real_server: str, tiny_model_dir: Path) -> None:
    before = metric(real_server, "ddx_llm_tokens_generated_total", str(tiny_model_dir))
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(model=None, messages=HI, max_tokens=5000)  # type: ignore[arg-type]
    assert err.value.body["code"] == "context_too_long"
    long_prompt = [{"role": "user", "content": "the weather in Berlin " * 1500}]
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(model=None, messages=long_prompt)  # type: ignore[arg-type]
    assert err.value.body["code"] == "context_too_long"
    assert metric(real_server, "ddx_llm_tokens_generated_total", str(tiny_model_dir)) == before


def test_tool_history_and_text_parts_render(client: openai.OpenAI, eos_id: int) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    history = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Berlin?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Berlin"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C, sunny"},
    ]
    with_tools = greedy(client, eos_id, messages=history, tools=tools, max_tokens=3)
    without = greedy(client, eos_id, messages=history, tools=tools, tool_choice="none", max_tokens=3)
    # the tool signatures are in the prompt only when the model may call them
    assert with_tools.usage.prompt_tokens > without.usage.prompt_tokens > 40
    assert with_tools.choices[0].finish_reason == "length"


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no/such-model", messages=HI)
    assert err.value.body["code"] == "model_not_found"


def test_concurrent_requests_are_all_answered_correctly(client: openai.OpenAI, eos_id: int) -> None:
    prompts = [[{"role": "user", "content": f"Question number {i}"}] for i in range(3)]
    expected = [greedy(client, eos_id, messages=p, max_tokens=15).choices[0].message.content for p in prompts]
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        if i % 2:
            results[i] = stream_text(client, eos_id, messages=prompts[i % 3], max_tokens=15)[0]
        else:
            results[i] = greedy(client, eos_id, messages=prompts[i % 3], max_tokens=15).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: expected[i % 3] for i in range(6)}


def test_disconnect_stops_generation_and_next_request_is_served(client: openai.OpenAI, real_server: str,
                                                                 eos_id: int, tiny_model_dir: Path) -> None:
    model = str(tiny_model_dir)
    before = metric(real_server, "ddx_llm_tokens_generated_total", model)
    body = {"messages": HI, "max_tokens": 4000, "temperature": 0, "stream": True,
            "logit_bias": {str(eos_id): EOS_BIAS}}
    with httpx.stream("POST", f"{real_server}/v1/chat/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
    assert sum(line.startswith("data: ") for line in got) >= 3
    # the worker is single-threaded: this answer comes after the abandoned generation has stopped
    after_r = greedy(client, eos_id, max_tokens=2)
    assert after_r.usage.completion_tokens == 2
    spent = metric(real_server, "ddx_llm_tokens_generated_total", model) - before - 2
    assert 2 <= spent < 2000  # two content chunks arrived; stopped long before its 4000 tokens


def test_health_and_metrics_answer_during_generation(client: openai.OpenAI, real_server: str, eos_id: int) -> None:
    done = threading.Event()
    texts: list[str] = []

    def long_stream() -> None:
        texts.append(stream_text(client, eos_id, max_tokens=3500)[0])
        done.set()

    worker = threading.Thread(target=long_stream)
    worker.start()
    try:
        answered = 0
        while not done.is_set() and answered < 5:
            health = httpx.get(f"{real_server}/health", timeout=5).json()
            assert health["components"]["llm"]["state"] == "ready"
            assert httpx.get(f"{real_server}/metrics", timeout=5).status_code == 200
            answered += 1 if not done.is_set() else 0
        assert answered == 5, "the generation ended before /health could be checked during it"
    finally:
        worker.join(60)
    assert texts and texts[0]


def test_metrics_count_tokens_and_load(real_server: str, client: openai.OpenAI, eos_id: int,
                                       tiny_model_dir: Path) -> None:
    model = str(tiny_model_dir)
    before = metric(real_server, "ddx_llm_tokens_generated_total", model)
    greedy(client, eos_id, max_tokens=7)
    assert metric(real_server, "ddx_llm_tokens_generated_total", model) == before + 7
    assert metric(real_server, "ddx_llm_time_to_first_token_seconds_count", model) >= 1
    assert metric(real_server, "ddx_llm_generation_tokens_per_second_count", model) >= 1
    assert metric(real_server, "ddx_llm_model_load_seconds_count", model) >= 1


def test_next_turn_reuses_the_kv_cache_without_changing_the_answer(client: openai.OpenAI, eos_id: int) -> None:
    first_turn = [{"role": "user", "content": "Tell me about the harbour"}]
    first = greedy(client, eos_id, messages=first_turn, max_tokens=10)
    assert first.usage.prompt_tokens_details.cached_tokens < first.usage.prompt_tokens
    second_turn = first_turn + [{"role": "assistant", "content": first.choices[0].message.content},
                                {"role": "user", "content": "And the stars?"}]
    warm = greedy(client, eos_id, messages=second_turn, max_tokens=10)
    assert warm.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 1
    # another conversation in between does not evict this one (the cache holds several, LRU)
    greedy(client, eos_id, messages=[{"role": "system", "content": "Something else entirely"}], max_tokens=3)
    again = greedy(client, eos_id, messages=second_turn, max_tokens=10)
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1
    assert warm.choices[0].message.content == again.choices[0].message.content


def test_non_streaming_client_that_leaves_stops_its_generation(client: openai.OpenAI, real_server: str,
                                                               eos_id: int, tiny_model_dir: Path) -> None:
    model = str(tiny_model_dir)
    before = metric(real_server, "ddx_llm_tokens_generated_total", model)
    body = {"messages": HI, "max_tokens": 4000, "temperature": 0, "logit_bias": {str(eos_id): EOS_BIAS}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{real_server}/v1/chat/completions", json=body, timeout=httpx.Timeout(10, read=0.3))
    assert greedy(client, eos_id, max_tokens=2).usage.completion_tokens == 2
    # batched, the next request need not wait for the abandoned one: its tokens are counted when it has stopped
    wait_for(lambda: metric(real_server, "ddx_llm_tokens_generated_total", model) - before - 2 > 0, 30)
    spent = metric(real_server, "ddx_llm_tokens_generated_total", model) - before - 2
    assert 0 < spent < 3000


def test_models_list_shows_the_local_model_extras(client: openai.OpenAI, tiny_model_dir: Path) -> None:
    models = {m.id: m.model_dump() for m in client.models.list().data}
    local = models[str(tiny_model_dir)]
    assert (local["arch"], local["context_window"], local["quantization"]) == ("qwen3", 4096, "float32")
    assert 0 < local["total_params_b"] < 0.001 and local["label"] == tiny_model_dir.name
    current = httpx.get(f"{client.base_url}models/current", timeout=10).json()
    assert current["model_id"] == str(tiny_model_dir) and current["loaded"] is True and current["last_load_ms"] >= 0
