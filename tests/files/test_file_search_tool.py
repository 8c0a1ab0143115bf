"""The file_search tool through /v1/responses (openai SDK): scripted mock round trips, streaming events, include,
citations, a three-turn chain, and a forced tool_choice on the tiny real model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import wait_for
from tests.responses.support import assert_wire

from .conftest import animal_store, sdk

# The mock answers a tool output first (its rules are tried in order), so a search result never re-triggers a call.
SCRIPT: list[dict[str, Any]] = [
    {"match": "(?s)Passages found.*clowder", "reply": {"content": "A group of cats is a clowder (cats.md)."}},
    {"match": "(?s)Passages found.*Collie", "reply": {"content": "The Border Collie, says dogs.txt."}},
    {"match": "(?s)Passages found.*whale shark", "reply": {"content": "The whale shark is the largest fish."}},
    {"match": "No passage", "reply": {"content": "Nothing in your files says so."}},
    {"match": "(?i)cats", "reply": {"tool_calls": [{"name": "file_search",
                                                     "arguments": {"queries": ["group of cats"]}}]}},
    {"match": "(?i)dog", "reply": {"tool_calls": [{"name": "file_search",
                                                    "arguments": {"queries": ["most intelligent dog breed"]}}]}},
    {"match": "(?i)fish", "reply": {"tool_calls": [{"name": "file_search",
                                                     "arguments": {"queries": ["largest fish"]}}]}},
    {"match": "(?i)unicorn", "reply": {"tool_calls": [{"name": "file_search",
                                                        "arguments": {"queries": ["unicorn horn"]}}]}},
]


@pytest.fixture
def scripted(files_server: Callable[..., str]) -> tuple[openai.OpenAI, str, dict[str, str]]:
    client = sdk(files_server(script=SCRIPT))
    store_id, ids = animal_store(client)
    return client, store_id, ids


def _tool(store_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "file_search", "vector_store_ids": [store_id], **extra}


def test_round_trip_cites_the_right_file(scripted: tuple[openai.OpenAI, str, dict[str, str]]) -> None:
    client, store_id, ids = scripted
    response = client.responses.create(model="mock", input="What is a group of cats called?",
                                       tools=[_tool(store_id)])  # type: ignore[list-item]
    call, message = response.output[0], response.output[-1]
    assert call.type == "file_search_call" and call.status == "completed"
    assert call.queries == ["group of cats"] and call.results is None  # results only with include
    assert message.type == "message"
    text = message.content[0]
    assert text.text == "A group of cats is a clowder (cats.md)."
    assert [(a.type, a.file_id, a.filename) for a in text.annotations] == [("file_citation", ids["cats.md"],
                                                                             "cats.md")]
    assert text.annotations[0].index == text.text.index("cats.md") + len("cats.md")


def test_include_results_keeps_them_on_the_item(scripted: tuple[openai.OpenAI, str, dict[str, str]]) -> None:
    client, store_id, ids = scripted
    response = client.responses.create(model="mock", input="Which dog is the most intelligent?",
                                       tools=[_tool(store_id, max_num_results=2)],  # type: ignore[list-item]
                                       include=["file_search_call.results"])
    call = response.output[0]
    assert call.results and call.results[0].file_id == ids["dogs.txt"] and call.results[0].filename == "dogs.txt"
    assert "Collie" in (call.results[0].text or "") and 0 < (call.results[0].score or 0) <= 1
    assert len(call.results) <= 2
    fetched = client.responses.retrieve(response.id)
    assert fetched.output[0].results[0].file_id == ids["dogs.txt"]  # type: ignore[union-attr]
    assert_wire(fetched)


def test_filters_of_the_tool_apply(scripted: tuple[openai.OpenAI, str, dict[str, str]]) -> None:
    client, store_id, _ = scripted
    response = client.responses.create(
        model="mock", input="Tell me about cats", include=["file_search_call.results"],
        tools=[_tool(store_id, filters={"type": "eq", "key": "kind", "value": "canine"})])  # type: ignore[list-item]
    assert response.output[0].results == []  # type: ignore[union-attr]
    assert response.output[-1].content[0].text == "Nothing in your files says so."  # type: ignore[union-attr]
    assert response.output[-1].content[0].annotations == []  # type: ignore[union-attr]


def test_stream_events_in_order(scripted: tuple[openai.OpenAI, str, dict[str, str]]) -> None:
    client, store_id, ids = scripted
    with client.responses.stream(model="mock", input="What is the largest fish?",
                                 tools=[_tool(store_id)]) as stream:  # type: ignore[list-item]
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    search = [t for t in types if t.startswith("response.file_search_call.")]
    assert search == ["response.file_search_call.in_progress", "response.file_search_call.searching",
                      "response.file_search_call.completed"]
    added = types.index("response.output_item.added")
    assert added < types.index("response.file_search_call.in_progress")
    annotation = next(e for e in events if e.type == "response.output_text.annotation.added")
    assert annotation.annotation.file_id == ids["fish.html"]  # type: ignore[attr-defined,union-attr]
    assert final.output[-1].content[0].annotations[0].file_id == ids["fish.html"]  # type: ignore[union-attr]
    item_ids = {e.item_id for e in events if e.type.startswith("response.file_search_call.")}  # type: ignore[attr-defined]
    assert item_ids == {final.output[0].id}


def test_a_three_turn_chain_searches_each_time(scripted: tuple[openai.OpenAI, str, dict[str, str]]) -> None:
    client, store_id, ids = scripted
    previous = None
    expected = [("Tell me about cats", "cats.md"), ("And dogs?", "dogs.txt"), ("And fish?", "fish.html")]
    for question, answer_file in expected:
        response = client.responses.create(model="mock", input=question, previous_response_id=previous,
                                           tools=[_tool(store_id)])  # type: ignore[list-item]
        calls = [o for o in response.output if o.type == "file_search_call"]
        assert len(calls) == 1 and calls[0].status == "completed"
        notes = response.output[-1].content[0].annotations  # type: ignore[union-attr]
        assert notes and notes[0].file_id == ids[answer_file]
        previous = response.id


def test_unknown_store_in_the_tool_is_404_before_anything_runs(
        scripted: tuple[openai.OpenAI, str, dict[str, str]]) -> None:
    client, _, _ = scripted
    with pytest.raises(openai.NotFoundError, match="vs_nope"):
        client.responses.create(model="mock", input="cats?", tools=[_tool("vs_nope")])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError, match="vector_store_ids"):
        client.responses.create(model="mock", input="cats?",
                                tools=[{"type": "file_search", "vector_store_ids": []}])  # type: ignore[list-item]


@pytest.mark.slow
def test_forced_tool_choice_on_the_tiny_model(files_server: Callable[..., str], tiny_model_dir: Path) -> None:
    """The tiny random model must call file_search (forced; its arguments are decoded against the tool's schema),
    the search runs on what it wrote, and the turn ends with an answer."""
    url = files_server({"llm.use_real_model": True, "llm.model": str(tiny_model_dir)})
    wait_for(lambda: httpx.get(f"{url}/health").json()["components"]["llm"]["state"] != "loading", 60)
    client = sdk(url)
    store_id, _ = animal_store(client)
    response = client.responses.create(model=str(tiny_model_dir), input="What is a group of cats called?",
                                       tools=[_tool(store_id)], tool_choice={"type": "file_search"},  # type: ignore[list-item]
                                       include=["file_search_call.results"], max_output_tokens=400,
                                       max_tool_calls=1)
    call = response.output[0]
    assert call.type == "file_search_call"
    assert isinstance(call.queries, list) and all(isinstance(q, str) for q in call.queries)
    assert call.status in ("completed", "failed")  # random words may be no query at all: then it fails, reported
    assert (call.results is not None) == (call.status == "completed")
    assert response.output[-1].type == "message"
