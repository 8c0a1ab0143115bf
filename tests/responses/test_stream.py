"""Streaming: the SDK's stream helper, the strict event grammar, mid-stream failure, and a client leaving."""

from __future__ import annotations

import copy
import sqlite3
from typing import Any

import httpx
import openai
import pytest

from ddx_omni.llm.engine import ChatParams, ToolCall
from tests.conftest import wait_for

from .conftest import sdk
from .support import ScriptedEngine, check_event_order, read_sse
from .test_create import WEATHER_TOOL


def text_then_calls(params: ChatParams) -> list[Any]:
    return ["Let me ", "check.", ToolCall("call_a", "get_weather", '{"city":"Oslo"}'),
            ToolCall("call_b", "get_weather", '{"city":"Rome"}')]


def test_sdk_stream_helper_gets_the_final_response(serve: Any) -> None:
    client = sdk(serve(ScriptedEngine()))
    with client.responses.stream(model="m", input="streamed words here") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Echo: streamed words here" == final.output_text
    assert final.status == "completed"
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_sdk_stream_with_tool_calls(serve: Any) -> None:
    client = sdk(serve(ScriptedEngine(reply=text_then_calls)))
    with client.responses.stream(model="m", input="weather?", tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["message", "function_call", "function_call"]
    assert final.output_text == "Let me check."
    assert [item.call_id for item in final.output[1:]] == ["call_a", "call_b"]


@pytest.mark.parametrize("reply", [None, text_then_calls], ids=["text", "text+tool_calls"])
def test_event_order_is_strict(serve: Any, reply: Any) -> None:
    engine = ScriptedEngine(reply=reply) if reply else ScriptedEngine()
    url = serve(engine)
    events, names = read_sse(url, {"model": "m", "input": "one two three", "tools": [WEATHER_TOOL]})
    assert names == [e["type"] for e in events]
    final = check_event_order(events)
    assert final["status"] == "completed" and events[-1]["type"] == "response.completed"
    stored = httpx.get(f"{url}/v1/responses/{final['id']}", timeout=30).json()
    assert stored == final
    kinds = [e["type"] for e in events]
    if reply is None:  # a tool is offered and the user spoke: one function call
        assert kinds[2:] == ["response.output_item.added", "response.function_call_arguments.delta",
                             "response.function_call_arguments.done", "response.output_item.done",
                             "response.completed"]
    else:
        assert kinds.count("response.output_item.added") == 3 and kinds.count("response.output_text.delta") == 2


def test_text_only_event_sequence(serve: Any) -> None:
    url = serve(ScriptedEngine())
    events, _ = read_sse(url, {"model": "m", "input": "a b"})
    check_event_order(events)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]


def test_checker_rejects_a_misordered_stream(serve: Any) -> None:
    events, _ = read_sse(serve(ScriptedEngine()), {"model": "m", "input": "a b"})
    swapped = copy.deepcopy(events)
    swapped[4], swapped[7] = swapped[7], swapped[4]  # text.done before a delta
    for broken in (swapped, events[:-1] + events[-1:] * 2, [events[1], events[0], *events[2:]]):
        with pytest.raises(AssertionError):
            check_event_order(broken)


def test_failure_mid_stream_is_an_error_event_then_failed(serve: Any) -> None:
    url = serve(ScriptedEngine(fail_after=2))
    events, _ = read_sse(url, {"model": "m", "input": "many words to say here"})
    final = check_event_order(events)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "server_error" and events[-2]["message"]
    assert final["status"] == "failed" and final["error"]["code"] == "server_error"
    assert final["output"][0]["content"][0]["text"] == "Echo: many" and final["output"][0]["status"] == "incomplete"
    stored = httpx.get(f"{url}/v1/responses/{final['id']}", timeout=30).json()
    assert stored["status"] == "failed"


def test_openai_sdk_reads_the_error_event_and_the_failed_response(serve: Any) -> None:
    client = openai.OpenAI(base_url=f"{serve(ScriptedEngine(fail_after=2))}/v1", api_key="x", max_retries=0)
    events = list(client.responses.create(model="m", input="many words to say here", stream=True))
    error, failed = events[-2:]
    assert error.type == "error" and error.code == "server_error" and "RuntimeError" in error.message
    assert failed.type == "response.failed" and failed.response.error.code == "server_error"


def test_client_leaving_stops_generation_and_saves_what_was_made(serve: Any) -> None:
    engine = ScriptedEngine(delay=0.05)
    url = serve(engine)
    words = " ".join(f"w{i}" for i in range(400))  # 20 s if it ran to the end
    seen: list[str] = []
    with httpx.stream("POST", f"{url}/v1/responses", json={"model": "m", "input": words, "stream": True},
                      timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"response.output_text.delta"' in line:
                seen.append(line)
                if len(seen) == 3:
                    break
            if line.startswith("data: ") and '"response.created"' in line:
                rid = line.split('"id":"', 1)[1].split('"', 1)[0]
    def stored_cancelled() -> bool:
        answer = httpx.get(f"{url}/v1/responses/{rid}", timeout=30)
        return answer.status_code == 200 and answer.json()["status"] == "cancelled"

    wait_for(stored_cancelled, timeout=30)
    stored = httpx.get(f"{url}/v1/responses/{rid}", timeout=30).json()
    assert engine.outcomes == ["aborted"]
    text = stored["output"][0]["content"][0]["text"]
    assert text.startswith("Echo: w0") and len(text.split()) < 100
    assert stored["output"][0]["status"] == "incomplete"


def test_a_plain_request_whose_client_hangs_up_stops_too(serve: Any, tmp_path: Any) -> None:
    engine = ScriptedEngine(delay=0.05)
    url = serve(engine)
    words = " ".join(f"w{i}" for i in range(400))  # 20 s if it ran to the end
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/responses", json={"model": "m", "input": words}, timeout=0.5)
    wait_for(lambda: engine.outcomes == ["aborted"], timeout=30)
    with sqlite3.connect(tmp_path / "responses.db") as db:
        wait_for(lambda: db.execute("SELECT status FROM responses").fetchall() == [("cancelled",)], timeout=30)
