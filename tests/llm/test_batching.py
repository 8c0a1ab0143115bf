"""Continuous batching on the tiny model: concurrent requests decode together and each gets what it gets alone."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .conftest import EOS_BIAS, start_long_stream, wait_ready

HARBOUR = [{"role": "user", "content": "Tell me about the harbour"}]


def batch_sizes(url: str, model: str) -> tuple[float, float]:
    """(decode steps so far, steps that decoded more than two requests at once) from ddx_llm_batch_size."""
    text = httpx.get(f"{url}/metrics", timeout=10).text

    def value(series: str) -> float:
        found = re.search(rf'^{series}{{(?:le="2.0",)?model="{re.escape(model)}"(?:,le="2.0")?}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    steps = value("ddx_llm_batch_size_count")
    return steps, steps - value("ddx_llm_batch_size_bucket")


def ask(client: openai.OpenAI, eos_id: int, case: dict[str, Any]) -> dict[str, Any]:
    body = {"temperature": 0, **case}
    body["logit_bias"] = {str(eos_id): EOS_BIAS, **case.get("logit_bias", {})}
    r = client.chat.completions.create(model=None, **body)  # type: ignore[arg-type]
    choice = r.choices[0]
    logprobs = [(e.token, round(e.logprob, 3), [t.token for t in e.top_logprobs])
                for e in (choice.logprobs.content or [])] if choice.logprobs else None
    return {"content": choice.message.content, "finish": choice.finish_reason,
            "tokens": r.usage.completion_tokens, "prompt": r.usage.prompt_tokens, "logprobs": logprobs}


def cases(tokenizer: Any) -> list[dict[str, Any]]:
    banned = {str(t): -100 for t in tokenizer.encode(" the harbour", add_special_tokens=False)}
    return [
        {"messages": HARBOUR, "max_tokens": 16},
        {"messages": [{"role": "user", "content": "Write a poem about the sea"}], "max_tokens": 12,
         "temperature": 0.9, "extra_body": {"top_k": 1}},  # a sampler of its own (top-k 1: deterministic)
        {"messages": HARBOUR, "max_tokens": 14, "logit_bias": banned, "presence_penalty": 1.5,
         "frequency_penalty": 0.7},
        {"messages": [{"role": "user", "content": "Give me JSON"}], "max_tokens": 24,
         "response_format": {"type": "json_object"}},
        {"messages": [{"role": "user", "content": "Numbers please"}], "max_tokens": 8, "logprobs": True,
         "top_logprobs": 3},
    ]


def with_stop(client: openai.OpenAI, eos_id: int, case: dict[str, Any]) -> dict[str, Any]:
    """The case with a stop string taken from the middle of its own greedy answer."""
    text = ask(client, eos_id, case)["content"]
    words = [w for w in text.split() if len(w) > 2]
    assert len(words) > 2, text
    return {**case, "stop": [words[len(words) // 2]]}


def test_concurrent_requests_each_get_what_they_get_alone(client: openai.OpenAI, real_server: str, eos_id: int,
                                                          tokenizer: Any, tiny_model_dir: Path) -> None:
    todo = cases(tokenizer)
    todo.append(with_stop(client, eos_id, {"messages": [{"role": "user", "content": "Stars?"}], "max_tokens": 30}))
    alone = [ask(client, eos_id, case) for case in todo]
    assert alone[-1]["finish"] == "stop" and alone[-1]["tokens"] < 30  # the stop string cut it short
    assert alone[3]["content"].startswith("{")
    steps, wide = batch_sizes(real_server, str(tiny_model_dir))
    hang_up = threading.Event()
    # a long stream runs all along, so the requests join a batch that is already decoding
    reader, events, started = start_long_stream(real_server, eos_id, stop=hang_up)
    assert started.wait(30)
    try:
        with ThreadPoolExecutor(len(todo)) as pool:
            together = list(pool.map(lambda case: ask(client, eos_id, case), todo))
    finally:
        hang_up.set()
        reader.join(60)
    assert together == alone
    after_steps, after_wide = batch_sizes(real_server, str(tiny_model_dir))
    assert after_steps > steps and after_wide > wide  # some steps decoded more than two requests at once


def test_a_client_hanging_up_mid_batch_stops_only_its_own(real_server: str, eos_id: int) -> None:
    leave = threading.Event()
    gone, gone_events, gone_started = start_long_stream(real_server, eos_id, max_tokens=4000, stop=leave)
    stays, stays_events, stays_started = start_long_stream(real_server, eos_id, max_tokens=600,
                                                           messages=HARBOUR)
    assert gone_started.wait(30) and stays_started.wait(30)
    leave.set()
    gone.join(60)
    stays.join(120)
    finish = [e["choices"][0].get("finish_reason") for e in stays_events if e.get("choices")]
    usage = [e["usage"] for e in stays_events if e.get("usage")]
    assert finish[-1] == "length" and usage[-1]["completion_tokens"] == 600
    assert not any(e.get("choices") and e["choices"][0].get("finish_reason") for e in gone_events)
    # the server is free again: the stream that left does not hold the model
    health = httpx.get(f"{real_server}/health", timeout=10).json()["components"]["llm"]
    assert health["compute"]["batch"]["active"] == 0


def test_a_seeded_request_runs_alone_and_reproduces(client: openai.OpenAI, real_server: str, eos_id: int) -> None:
    seeded = {"messages": HARBOUR, "max_tokens": 12, "temperature": 1.0, "seed": 7}
    alone = ask(client, eos_id, seeded)
    hang_up = threading.Event()
    reader, _, started = start_long_stream(real_server, eos_id, stop=hang_up)
    assert started.wait(30)
    try:
        with ThreadPoolExecutor(3) as pool:
            plain = pool.submit(ask, client, eos_id, {"messages": HARBOUR, "max_tokens": 10, "temperature": 1.0})
            again = pool.submit(ask, client, eos_id, seeded)
            assert again.result(timeout=120) == alone  # it waited for the batch to empty, then ran alone
            assert plain.result(timeout=120)["tokens"] == 10
    finally:
        hang_up.set()
        reader.join(60)


@pytest.mark.slow
def test_hot_swap_during_a_batch_keeps_the_swap_contract(server_with, tiny_model_dir: Path,
                                                         tiny_model_dir_b: Path, eos_id: int) -> None:
    url = server_with({"llm.use_real_model": True, "llm.model": "tiny-a", "llm.swap_drain_s": 0.2,
                       "llm.models": [{"id": "tiny-a", "path": str(tiny_model_dir)},
                                      {"id": "tiny-b", "path": str(tiny_model_dir_b)}]})
    wait_ready(url)
    streams = [start_long_stream(url, eos_id, messages=[{"role": "user", "content": f"Story {i}"}])
               for i in range(3)]
    assert all(started.wait(30) for _, _, started in streams)
    swap = httpx.post(f"{url}/v1/models/load", json={"model_id": "tiny-b"}, timeout=60)
    assert swap.status_code == 200 and swap.json()["loaded"] == "tiny-b"
    for reader, events, _ in streams:
        reader.join(60)
        assert {e["model"] for e in events if "choices" in e} == {"tiny-a"}  # never continued on B
        errors = [e for e in events if "error" in e]
        assert errors and errors[0]["error"]["code"] == "model_unavailable", events[-1]
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=60)
    assert sdk.chat.completions.create(model=None, messages=HARBOUR, max_tokens=3).model == "tiny-b"  # type: ignore[arg-type]


def test_without_a_prompt_cache_nothing_is_reused_and_answers_agree(server_with, client: openai.OpenAI,
                                                                   tiny_model_dir: Path, eos_id: int) -> None:
    url = server_with({"llm.use_real_model": True, "llm.model": str(tiny_model_dir), "llm.prompt_cache_bytes": 0})
    wait_ready(url)
    uncached = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=60)
    first = ask(client, eos_id, {"messages": HARBOUR, "max_tokens": 10})
    turn = HARBOUR + [{"role": "assistant", "content": first["content"]}, {"role": "user", "content": "More?"}]
    answers = set()
    for sdk, reused in ((client, True), (uncached, False), (uncached, False)):
        r = sdk.chat.completions.create(model=None, messages=turn, max_tokens=10, temperature=0,  # type: ignore[arg-type]
                                        logit_bias={str(eos_id): EOS_BIAS})
        cached = r.usage.prompt_tokens_details.cached_tokens
        assert cached >= first["prompt"] if reused else cached == 0
        answers.add(r.choices[0].message.content)
    assert len(answers) == 1  # the cached prefix changes nothing in the answer


def test_concurrent_tool_calls_and_reasoning_each_match_alone(tool_client: openai.OpenAI,
                                                              tool_model_dir: Path) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    ask_weather = [{"role": "user", "content": "What is the weather in Berlin?"}]
    variants = [{"tools": tools}, {"tools": tools, "tool_choice": "required"}, {"tools": tools, "tool_choice": "none"},
                {"tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, {}]

    def call(extra: dict[str, Any]) -> tuple:
        r = tool_client.chat.completions.create(model=None, messages=ask_weather, temperature=0, **extra)  # type: ignore[arg-type]
        choice = r.choices[0]
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        return choice.finish_reason, choice.message.content, calls, choice.message.model_dump().get("reasoning_content")

    alone = [call(extra) for extra in variants]
    assert alone[0][0] == "tool_calls" and alone[0][3] and alone[2][2] == []  # a call with reasoning; none
    eos = json.loads((tool_model_dir / "config.json").read_text())["eos_token_id"]
    hang_up = threading.Event()
    reader, _, started = start_long_stream(str(tool_client.base_url).removesuffix("/v1/"), eos, stop=hang_up)
    assert started.wait(30)
    try:
        with ThreadPoolExecutor(len(variants) * 2) as pool:
            together = list(pool.map(call, variants * 2))
    finally:
        hang_up.set()
        reader.join(60)
    assert together == alone * 2
