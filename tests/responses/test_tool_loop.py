"""The built-in tool loop, with the smallest tool kind the protocol allows (support.LookupKind): steps, usage,
max_tool_calls, forced choices, mixed function tools, deferral, replay through a chain, streaming and cancel.
Plain HTTP here: the openai SDK cannot type an item kind OpenAI does not have (its MCP items are tested with
the SDK in tests/tools)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ddx_omni.llm.engine import ChatParams, ToolCall
from tests.conftest import wait_for

from .support import LookupKind, ScriptedEngine, check_event_order, count_tokens, read_sse
from .test_create import WEATHER_TOOL

LOOKUP = {"type": "lookup"}


class Client:
    """POST /v1/responses and GET one, as JSON."""

    def __init__(self, url: str) -> None:
        self.url = url

    def create(self, status: int = 200, **body: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/v1/responses", json=body, timeout=30)
        assert answer.status_code == status, answer.text
        return answer.json()

    def retrieve(self, response_id: str, status: int = 200) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/v1/responses/{response_id}", timeout=30)
        assert answer.status_code == status, answer.text
        return answer.json()

    def cancel(self, response_id: str) -> dict[str, Any]:
        return httpx.post(f"{self.url}/v1/responses/{response_id}/cancel", timeout=30).json()


def types(response: dict[str, Any]) -> list[str]:
    return [item["type"] for item in response["output"]]


def text(item: dict[str, Any]) -> str:
    return item["content"][0]["text"]


def lookup_then_answer(params: ChatParams) -> list[Any]:
    """Calls lookup(key=<last user word>) once, then answers with what the tool said."""
    last = params.messages[-1]
    if last["role"] == "tool":
        return ["Found: ", str(last["content"])]
    if params.tools and any(t["function"]["name"] == "lookup" for t in params.tools):
        word = str(last.get("content") or "x").split()[-1]
        return ["Looking. ", ToolCall(f"call_{len(params.messages)}", "lookup", json.dumps({"key": word}))]
    return ["no tools"]


def always_lookup(params: ChatParams) -> list[Any]:
    if params.tools:
        return [ToolCall(f"c{len(params.messages)}", "lookup", '{"key": "again"}')]
    return ["done without tools"]


def test_a_builtin_call_runs_and_the_model_answers_with_its_result(serve: Any) -> None:
    kind = LookupKind()
    engine = ScriptedEngine(reply=lookup_then_answer)
    client = Client(serve(engine, tools={"lookup": kind}))
    response = client.create(model="m", input="find alpha", tools=[LOOKUP])
    assert response["status"] == "completed"
    assert types(response) == ["message", "lookup_call", "message"]
    call = response["output"][1]
    assert call["status"] == "completed" and call["output"] == "value of alpha" and kind.calls == [{"key": "alpha"}]
    answer = response["output"][2]["content"][0]
    assert answer["text"] == "Found: value of alpha"
    assert answer["annotations"][0]["url"] == "https://lookup.test/"  # the final answer carries the kind's notes
    # the second generation saw the call (joined to the text before it) and its result
    second = engine.prompts[1]
    assert second[-2]["role"] == "assistant" and second[-2]["content"] == "Looking. "
    assert second[-2]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": '{"key": "alpha"}'}
    assert second[-1] == {"role": "tool", "tool_call_id": call["id"], "content": "value of alpha"}
    assert [t["function"]["name"] for t in engine.params[0].tools] == ["lookup"]
    usage = response["usage"]  # sums both generations: 2 + 2 pieces, and both prompts
    assert usage["output_tokens"] == 4
    assert usage["input_tokens"] == sum(count_tokens(prompt) for prompt in engine.prompts)
    assert response["tools"] == [LOOKUP]
    assert client.retrieve(response["id"]) == response


def test_max_tool_calls_then_the_model_must_answer_without_tools(serve: Any) -> None:
    engine = ScriptedEngine(reply=always_lookup)
    client = Client(serve(engine, tools={"lookup": LookupKind()}, overrides={"responses.max_tool_calls": 3}))
    limited = client.create(model="m", input="go", tools=[LOOKUP], max_tool_calls=2)
    assert types(limited) == ["lookup_call", "lookup_call", "message"]
    assert text(limited["output"][2]) == "done without tools" and limited["max_tool_calls"] == 2
    assert engine.params[-1].tools is None and len(engine.prompts) == 3
    by_default = client.create(model="m", input="go", tools=[LOOKUP])
    assert types(by_default) == ["lookup_call"] * 3 + ["message"]  # [responses].max_tool_calls


def test_parallel_calls_beyond_the_limit_are_dropped(serve: Any) -> None:
    def three_at_once(params: ChatParams) -> list[Any]:
        if params.tools:
            return [ToolCall(f"c{n}", "lookup", json.dumps({"key": f"k{n}"})) for n in range(3)]
        return ["answer"]

    kind = LookupKind()
    client = Client(serve(ScriptedEngine(reply=three_at_once), tools={"lookup": kind}))
    response = client.create(model="m", input="go", tools=[LOOKUP], max_tool_calls=2)
    assert types(response) == ["lookup_call", "lookup_call", "message"]
    assert kind.calls == [{"key": "k0"}, {"key": "k1"}]


def test_a_function_call_still_ends_the_turn_after_builtin_calls_ran(serve: Any) -> None:
    def mixed(params: ChatParams) -> list[Any]:
        return [ToolCall("c1", "lookup", '{"key": "a"}'), ToolCall("c2", "get_weather", '{"city": "Oslo"}')]

    engine = ScriptedEngine(reply=mixed)
    client = Client(serve(engine, tools={"lookup": LookupKind()}))
    response = client.create(model="m", input="go", tools=[WEATHER_TOOL, LOOKUP])
    assert types(response) == ["lookup_call", "function_call"]
    assert response["output"][1]["call_id"] == "c2" and len(engine.prompts) == 1
    assert [t["function"]["name"] for t in engine.params[0].tools] == ["get_weather", "lookup"]
    assert [t["type"] for t in response["tools"]] == ["function", "lookup"]


def test_forced_builtin_choice_applies_to_the_first_generation(serve: Any) -> None:
    engine = ScriptedEngine(reply=lookup_then_answer)
    client = Client(serve(engine, tools={"lookup": LookupKind()}))
    response = client.create(model="m", input="find beta", tools=[LOOKUP, WEATHER_TOOL],
                             tool_choice={"type": "lookup"})
    assert text(response["output"][-1]) == "Found: value of beta"
    assert engine.params[0].tool_choice == {"type": "function", "function": {"name": "lookup"}}
    assert engine.params[1].tool_choice == "auto"
    required = client.create(model="m", input="find c", tools=[LOOKUP], tool_choice="required")
    assert engine.params[2].tool_choice == "required" and required["status"] == "completed"
    refused = client.create(400, model="m", input="x", tools=[LOOKUP], tool_choice={"type": "mcp"})
    assert refused["error"]["param"] == "tool_choice"


def test_names_shared_by_two_tools_are_prefixed(serve: Any) -> None:
    engine = ScriptedEngine(reply=lambda params: ["ok"])
    client = Client(serve(engine, tools={"lookup": LookupKind()}))
    clash = {**WEATHER_TOOL, "name": "lookup"}
    client.create(model="m", input="x", tools=[clash, LOOKUP])
    assert [t["function"]["name"] for t in engine.params[0].tools] == ["lookup", "lookup__lookup"]


def test_deferred_item_ends_the_turn_and_chain_replays_earlier_calls(serve: Any) -> None:
    kind = LookupKind()
    engine = ScriptedEngine(reply=lookup_then_answer)
    client = Client(serve(engine, tools={"lookup": kind}))
    held = client.create(model="m", input="find secret", tools=[{**LOOKUP, "defer_keys": ["secret"]}])
    assert types(held) == ["message", "lookup_hold"] and held["status"] == "completed"
    assert kind.calls == [] and len(engine.prompts) == 1
    first = client.create(model="m", input="find gamma", tools=[LOOKUP], previous_response_id=held["id"])
    second = client.create(model="m", input="thanks", previous_response_id=first["id"])
    replayed = engine.prompts[-1]
    calls = [m for m in replayed if m.get("tool_calls")]
    assert [c["tool_calls"][0]["function"]["arguments"] for c in calls] == ['{"key": "gamma"}']  # not the hold
    assert [m for m in replayed if m["role"] == "tool"] == [
        {"role": "tool", "tool_call_id": first["output"][1]["id"], "content": "value of gamma"}]
    assert text(second["output"][0]) == "no tools"
    assert kind.bound_contexts[1].history[-1]["type"] == "lookup_hold"
    # a stateless client sends the items back as input: they are kept and replayed the same way
    again = client.create(model="m", input=[{"role": "user", "content": "find z"}, *first["output"],
                                            {"role": "user", "content": "and?"}], store=False)
    assert [m["role"] for m in engine.prompts[-1]] == ["user", "assistant", "tool", "assistant", "user"]
    assert again["status"] == "completed"


def test_unavailable_and_unknown_tools(serve: Any) -> None:
    engine = ScriptedEngine(reply=lambda params: ["plain"])
    client = Client(serve(engine, tools={"lookup": LookupKind()}))
    response = client.create(model="m", input="x", tools=[{**LOOKUP, "unavailable": True}])
    assert text(response["output"][0]) == "plain" and engine.params[0].tools is None
    assert response["tools"] == [{**LOOKUP, "unavailable": True}]
    unknown = client.create(400, model="m", input="x", tools=[{"type": "code_interpreter"}])
    assert unknown["error"]["code"] == "unsupported_tool" and unknown["error"]["param"] == "tools[0].type"
    bad = client.create(400, model="m", input="x", tools=[{**LOOKUP, "defer_keys": "no"}])
    assert bad["error"]["code"] == "invalid_request"
    assert len(engine.prompts) == 1


def test_echo_redacts_what_the_tool_hides_and_store_false_works(serve: Any) -> None:
    client = Client(serve(ScriptedEngine(reply=lookup_then_answer), tools={"lookup": LookupKind()}))
    response = client.create(model="m", input="find d", tools=[{**LOOKUP, "secret": "s3cr3t"}], store=False)
    assert text(response["output"][-1]) == "Found: value of d" and "s3cr3t" not in json.dumps(response)
    client.retrieve(response["id"], status=404)


def test_stream_of_a_multi_step_turn_follows_the_grammar(serve: Any) -> None:
    url = serve(ScriptedEngine(reply=lookup_then_answer), tools={"lookup": LookupKind()})
    events, _ = read_sse(url, {"model": "m", "input": "find e", "tools": [LOOKUP]})
    final = check_event_order(events)
    kinds = [e["type"] for e in events]
    at = kinds.index("response.lookup_call.in_progress")
    assert kinds[at - 1] == "response.output_item.added" and events[at - 1]["item"]["type"] == "lookup_call"
    assert kinds[at + 1:at + 3] == ["response.lookup_call.completed", "response.output_item.done"]
    assert events[at]["output_index"] == 1 and events[at]["item_id"] == final["output"][1]["id"]
    assert "response.output_text.annotation.added" in kinds
    assert final["status"] == "completed" and text(final["output"][2]) == "Found: value of e"
    assert Client(url).retrieve(final["id"]) == final


def test_cancel_during_a_slow_tool_call(serve: Any) -> None:
    kind = LookupKind(delay=30)
    client = Client(serve(ScriptedEngine(reply=lookup_then_answer), tools={"lookup": kind}))
    created = client.create(model="m", input="find f", tools=[LOOKUP], background=True)
    wait_for(lambda: kind.calls != [], timeout=30)
    assert client.retrieve(created["id"])["output"][1]["status"] == "in_progress"
    assert client.cancel(created["id"])["status"] == "cancelled"
    stored = client.retrieve(created["id"])
    assert stored["status"] == "cancelled" and [item["status"] for item in stored["output"]] == [
        "completed", "incomplete"]


def test_output_budget_spans_every_step(serve: Any) -> None:
    engine = ScriptedEngine(reply=lookup_then_answer)
    client = Client(serve(engine, tools={"lookup": LookupKind()}))
    response = client.create(model="m", input="find g", tools=[LOOKUP], max_output_tokens=3)
    assert engine.params[1].max_tokens == 1  # 3 minus the first step's 2 pieces
    assert response["status"] == "incomplete" and response["incomplete_details"]["reason"] == "max_output_tokens"


def test_server_timing_counts_tool_time_apart(serve: Any) -> None:
    url = serve(ScriptedEngine(reply=lookup_then_answer), tools={"lookup": LookupKind(delay=0.1)})
    answer = httpx.post(f"{url}/v1/responses", json={"model": "m", "input": "find h", "tools": [LOOKUP]}, timeout=30)
    timing = dict(part.strip().split(";dur=") for part in answer.headers["server-timing"].split(","))
    assert float(timing["tools"]) >= 99  # the call's 100 ms sleep (uvloop timers may fire up to 1 ms early)
    assert float(timing["gateway"]) >= 0 and float(timing["engine"]) >= 0


def test_a_later_step_that_overflows_is_truncated_or_fails(serve: Any) -> None:
    engine = ScriptedEngine(reply=lookup_then_answer, context_window=120)
    client = Client(serve(engine, tools={"lookup": LookupKind(answer=" ".join(["word"] * 50))}))
    first = client.create(model="m", input=" ".join(["old"] * 30), max_output_tokens=20)
    ask = {"model": "m", "input": "find i", "tools": [LOOKUP], "previous_response_id": first["id"],
           "max_output_tokens": 20}
    truncated = client.create(**ask, truncation="auto")
    assert truncated["status"] == "completed" and text(truncated["output"][-1]).startswith("Found: word")
    assert "old" in engine.prompts[-2][0]["content"]  # the first step still had the old turn …
    assert all("old" not in str(m.get("content")) for m in engine.prompts[-1])  # … the second dropped it
    failed = client.create(**ask)
    assert failed["status"] == "failed" and "truncation='auto'" in failed["error"]["message"]


def test_attaching_to_a_background_turn_while_a_tool_runs(serve: Any) -> None:
    kind = LookupKind(delay=1.0)
    url = serve(ScriptedEngine(reply=lookup_then_answer), tools={"lookup": kind})
    client = Client(url)
    created = client.create(model="m", input="find j", tools=[LOOKUP], background=True)
    wait_for(lambda: kind.calls != [], timeout=30)  # the call is running: attach now
    events, _ = read_sse(url, get=f"/v1/responses/{created['id']}?stream=true")
    final = check_event_order(events)  # replayed from the start, then live through the tool's end
    assert final["status"] == "completed" and types(final) == ["message", "lookup_call", "message"]
    assert client.retrieve(created["id"]) == final
