"""Background responses: queued → in_progress → done, cancel, streaming, and what shutdown and restart leave."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from ddx_omni.responses.service import create_service, responses_database
from ddx_omni.responses.store import Store
from tests.conftest import live_server, wait_for

from .conftest import sdk
from .support import FakeLlm, ScriptedEngine, check_event_order, read_sse

LONG_INPUT = " ".join(f"w{i}" for i in range(300))  # 300 pieces: 15 s at 0.05 s each


def test_background_runs_detached_and_completes(serve: Any) -> None:
    client = sdk(serve(ScriptedEngine(delay=0.01)))
    created = client.responses.create(model="m", input="one two three", background=True)
    assert created.status == "queued" and created.background is True and created.output == []
    wait_for(lambda: client.responses.retrieve(created.id).status == "completed", timeout=15)
    done = client.responses.retrieve(created.id)
    assert done.output_text == "Echo: one two three" and done.usage.output_tokens == 4


def test_cancel_stops_a_background_response(serve: Any) -> None:
    engine = ScriptedEngine(delay=0.05)
    client = sdk(serve(engine))
    created = client.responses.create(model="m", input=LONG_INPUT, background=True)

    def producing() -> bool:
        current = client.responses.retrieve(created.id)
        return current.status == "in_progress" and len(current.output_text.split()) >= 3

    wait_for(producing, timeout=30)
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    stored = client.responses.retrieve(created.id)
    assert stored.status == "cancelled" and stored.output_text.startswith("Echo: w0")
    assert len(stored.output_text.split()) < 100 and engine.outcomes == ["aborted"]
    assert client.responses.cancel(created.id).status == "cancelled"  # again: no-op


def test_cancel_needs_a_background_response(serve: Any) -> None:
    client = sdk(serve(ScriptedEngine()))
    plain = client.responses.create(model="m", input="x")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="m", input="x", background=True, store=False)


def test_background_stream_and_chaining_waits_for_it(serve: Any) -> None:
    url = serve(ScriptedEngine(delay=0.01))
    events, _ = read_sse(url, {"model": "m", "input": "a b c", "background": True})
    final = check_event_order(events)
    assert events[0]["response"]["status"] == "queued" and final["status"] == "completed"
    client = sdk(url)
    slow = client.responses.create(model="m", input=LONG_INPUT, background=True)
    with pytest.raises(openai.BadRequestError, match="still in progress"):
        client.responses.create(model="m", input="next", previous_response_id=slow.id)
    client.responses.cancel(slow.id)


def test_shutdown_and_restart_leave_no_response_running_forever(make_settings: Any) -> None:
    settings = make_settings()
    engine = ScriptedEngine(delay=0.05)
    llm = FakeLlm(engine)
    with live_server(settings, {"llm": llm, "responses": create_service(settings, llm)}) as url:
        rid = sdk(url).responses.create(model="m", input=LONG_INPUT, background=True).id
        wait_for(lambda: httpx.get(f"{url}/v1/responses/{rid}", timeout=5).json()["status"] == "in_progress")
    # the server stopped mid-generation: saved as failed, with what was produced
    with live_server(settings, {"llm": llm, "responses": create_service(settings, llm)}) as url:
        stored = sdk(url).responses.retrieve(rid)
    assert stored.status == "failed" and stored.error is not None and "stopped" in stored.error.message
    assert engine.outcomes == ["aborted"]


async def test_restart_fails_responses_a_dead_process_left_unfinished(make_settings: Any) -> None:
    store = Store(responses_database(make_settings()))
    await store.open()
    body = {"id": "resp_1", "status": "in_progress", "created_at": 1, "background": True, "error": None}
    await store.save_response(body, [])
    assert await store.fail_unfinished("restarted") == 1
    stored = await store.get_response("resp_1")
    assert stored["status"] == "failed" and stored["error"] == {"code": "server_error", "message": "restarted"}
    assert await store.fail_unfinished("restarted") == 0
    await store.close()
    assert json.dumps(stored)  # still a plain JSON document


def test_background_stream_survives_the_client_leaving(serve: Any) -> None:
    engine = ScriptedEngine(delay=0.01)
    url = serve(engine)
    words = " ".join(f"w{i}" for i in range(60))
    with httpx.stream("POST", f"{url}/v1/responses", timeout=30,
                      json={"model": "m", "input": words, "stream": True, "background": True}) as response:
        lines = response.iter_lines()
        created = json.loads(next(line for line in lines if line.startswith("data: "))[len("data: "):])
        next(line for line in lines if '"response.output_text.delta"' in line)
    rid = created["response"]["id"]
    wait_for(lambda: httpx.get(f"{url}/v1/responses/{rid}", timeout=5).json()["status"] == "completed", timeout=15)
    stored = httpx.get(f"{url}/v1/responses/{rid}", timeout=5).json()
    assert stored["output"][0]["content"][0]["text"] == "Echo: " + words and engine.outcomes == ["finished"]


def test_a_running_background_response_can_be_streamed_again(serve: Any) -> None:
    url = serve(ScriptedEngine(delay=0.03))
    client = sdk(url)
    words = " ".join(f"w{i}" for i in range(40))

    def started(rid: str) -> bool:
        return len(client.responses.retrieve(rid).output_text.split()) >= 3

    first = client.responses.create(model="m", input=words, background=True)
    wait_for(lambda: started(first.id), timeout=30)
    events, _ = read_sse(url, get=f"/v1/responses/{first.id}?stream=true")  # the whole story, replayed then live
    final = check_event_order(events)
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "Echo: " + words

    second = client.responses.create(model="m", input=words, background=True)
    wait_for(lambda: started(second.id), timeout=30)
    resumed = list(client.responses.retrieve(second.id, stream=True, starting_after=4))
    numbers = [event.sequence_number for event in resumed]
    assert numbers == list(range(5, 5 + len(numbers))) and resumed[-1].type == "response.completed"

    with pytest.raises(openai.BadRequestError):  # finished: read it with a plain GET
        list(client.responses.retrieve(second.id, stream=True))
    with pytest.raises(openai.NotFoundError):
        list(client.responses.retrieve("resp_unknown", stream=True))
