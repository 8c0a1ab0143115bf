"""web_search through /v1/responses, end to end: ddx-omni in scripted mock mode (its calls are exact), the
stand-in internet of internet.py (a local server: SearXNG-compatible JSON API and real-looking pages, since
there is no internet here), and the openai SDK as the client."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import REPO
from tests.responses.support import assert_wire, check_event_order, read_sse
from tests.tools.mcp_support import call, client_for, say, write_script

from . import internet as fake

SOURCES = ["web_search_call.action.sources"]



def rules(net: fake.Internet, public: fake.Internet) -> list[tuple[str, dict[str, Any]]]:
    mlx = net.url("/pages/mlx.html", "localhost")
    return [
        ("tell me about mlx", call("web_search", query="mlx unified memory")),
        ('Search results for "mlx unified memory"', call("open_page", url=mlx)),
        ("share one unified memory pool", say(f"MLX arrays live in unified memory [1]; see [the MLX notes]({mlx}).")),
        ("only localhost please", call("web_search", query="sqlite wal")),
        ("open the wal page", call("open_page", url=net.url("/pages/sqlite-wal.html"))),
        ("open the hanging page", call("open_page", url=net.url("/hang"))),
        ("open the redirect", call("open_page", url=public.url(f"/redirect?to={net.url('/secret')}"))),
        ("search broken", call("web_search", query="malformed")),
        ("find checkpoint", call("find_in_page", url=net.url("/pages/sqlite-wal.html"), pattern="checkpoint")),
        ("A checkpoint moves", say("A checkpoint moves WAL transactions back into the database [1].")),
        ("failed:", say("The web search failed, so I cannot cite anything.")),
        ("Search results for", say("Found something.")),
        (".", say("Plain answer without searching.")),
    ]


@pytest.fixture
def omni(server_factory: Any, tmp_path: Path, internet: fake.Internet,
         public_internet: fake.Internet) -> Any:
    """omni(**overrides) → SDK client of ddx-omni in mock mode over searxng on the stand-in internet."""
    script = write_script(tmp_path / "script.json", rules(internet, public_internet))

    def start(**overrides: Any) -> tuple[str, openai.OpenAI]:
        settings = {"llm.mock_script": str(script), "web_search.provider": "searxng",
                    "web_search.url": internet.url(""), "web_search.allow_private_networks": True,
                    "web_search.fetch_timeout_s": 1.0, **overrides}
        url = server_factory(settings)
        return url, client_for(url)

    return start


def test_search_open_page_answer_with_citations(omni: Any, internet: fake.Internet) -> None:
    _, client = omni()
    response = client.responses.create(model="m", input="tell me about mlx", tools=[{"type": "web_search"}],
                                       include=SOURCES)
    assert response.status == "completed"
    assert [item.type for item in response.output] == ["web_search_call", "web_search_call", "message"]
    search, opened, message = response.output
    mlx = internet.url("/pages/mlx.html", "localhost")
    assert search.status == "completed" and search.id.startswith("ws_")
    assert search.action.type == "search" and search.action.query == "mlx unified memory"
    assert search.action.sources[0].url == mlx and len(search.action.sources) == 3
    assert opened.action.type == "open_page" and opened.action.url == mlx and opened.status == "completed"
    text = message.content[0].text
    notes = message.content[0].annotations
    assert [n.type for n in notes] == ["url_citation", "url_citation"]
    assert [text[n.start_index:n.end_index] for n in notes] == ["[1]", f"[the MLX notes]({mlx})"]
    assert all(n.url == mlx and n.title == "MLX: an array framework for Apple silicon" for n in notes)
    stored = client.responses.retrieve(response.id)
    assert stored.output == response.output
    assert_wire(stored)


def test_sources_only_when_included_and_preview_alias(omni: Any) -> None:
    _, client = omni()
    response = client.responses.create(model="m", input="tell me about mlx",
                                       tools=[{"type": "web_search_preview", "search_context_size": "low"}])
    search = response.output[0]
    assert search.type == "web_search_call" and search.action.sources is None
    assert response.output[-1].content[0].annotations  # cited all the same


def test_stream_events(omni: Any) -> None:
    url, _ = omni()
    events, _names = read_sse(url, {"model": "m", "input": "tell me about mlx", "tools": [{"type": "web_search"}]})
    final = check_event_order(events)
    assert final["status"] == "completed"
    first = final["output"][0]["id"]
    own = [e["type"] for e in events if e.get("item_id") == first and "web_search_call" in e["type"]]
    assert own == ["response.web_search_call.in_progress", "response.web_search_call.searching",
                   "response.web_search_call.completed"]
    assert all(e["output_index"] == 0 for e in events if e.get("item_id") == first)
    added = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [a["annotation"]["type"] for a in added] == ["url_citation", "url_citation"]


def test_allowed_domains_filter_sources_and_pages(omni: Any, internet: fake.Internet) -> None:
    _, client = omni()
    tool = {"type": "web_search", "filters": {"allowed_domains": ["localhost"]}}
    searched = client.responses.create(model="m", input="only localhost please", tools=[tool], include=SOURCES)
    urls = [s.url for s in searched.output[0].action.sources]
    assert urls and all(u.startswith(f"http://localhost:{internet.port}/") for u in urls)
    refused = client.responses.create(model="m", input="open the wal page", tools=[tool])
    assert refused.status == "completed"
    item = refused.output[0]
    assert item.status == "failed" and "outside the allowed domains (localhost)" in item.model_extra["error"]
    assert refused.output_text == "The web search failed, so I cannot cite anything."


def test_page_that_never_answers(omni: Any, internet: fake.Internet) -> None:
    _, client = omni()
    response = client.responses.create(model="m", input="open the hanging page", tools=[{"type": "web_search"}])
    assert response.status == "completed"
    item = response.output[0]
    assert item.status == "failed" and item.action.url == internet.url("/hang")
    assert "did not answer within 1 s" in item.model_extra["error"]
    assert response.output_text == "The web search failed, so I cannot cite anything."


def test_redirect_to_loopback_is_refused(omni: Any, internet: fake.Internet) -> None:
    _, client = omni(**{"web_search.allow_private_networks": False,
                        "web_search.allowed_networks": ["127.0.0.2/32"]})
    response = client.responses.create(model="m", input="open the redirect", tools=[{"type": "web_search"}])
    assert response.status == "completed"
    item = response.output[0]
    assert item.status == "failed" and "127.0.0.1" in item.model_extra["error"]
    assert "non-public address" in item.model_extra["error"]
    assert not any(r.path == "/secret" for r in internet.requests)


def test_malformed_provider_json(omni: Any) -> None:
    _, client = omni()
    response = client.responses.create(model="m", input="search broken", tools=[{"type": "web_search"}])
    assert response.status == "completed"
    item = response.output[0]
    assert item.status == "failed" and item.action.query == "malformed"
    assert item.model_extra["error"].startswith("searxng answered malformed JSON")
    assert response.output_text == "The web search failed, so I cannot cite anything."


def test_find_in_page_then_cite(omni: Any, internet: fake.Internet) -> None:
    _, client = omni()
    response = client.responses.create(model="m", input="find checkpoint", tools=[{"type": "web_search"}])
    item, message = response.output
    assert item.action.type == "find_in_page" and item.action.pattern == "checkpoint"
    note = message.content[0].annotations[0]
    assert message.content[0].text[note.start_index:note.end_index] == "[1]"
    assert note.url == internet.url("/pages/sqlite-wal.html") and note.title == "Write-Ahead Logging"


def test_earlier_calls_are_replayed_in_a_chain(omni: Any) -> None:
    _, client = omni()
    first = client.responses.create(model="m", input="tell me about mlx", tools=[{"type": "web_search"}])
    second = client.responses.create(model="m", input="thanks.", tools=[{"type": "web_search"}],
                                     previous_response_id=first.id)
    assert second.output_text == "Plain answer without searching."
    # the same turns without the calls: the chain's prompt is longer by the replayed calls
    bare = client.responses.create(model="m", tools=[{"type": "web_search"}], store=False, input=[
        {"role": "user", "content": "tell me about mlx"}, {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "thanks."}])
    assert second.usage.input_tokens > bare.usage.input_tokens + 20


def test_provider_none(server_factory: Any, tmp_path: Path) -> None:
    script = write_script(tmp_path / "script.json", [("tell me", call("web_search", query="mlx")),
                                                     (".", say("Plain answer without searching."))])
    client = client_for(server_factory({"llm.mock_script": str(script)}))
    offered = client.responses.create(model="m", input="hello.", tools=[{"type": "web_search"}])
    assert [i.type for i in offered.output] == ["message"] and offered.status == "completed"
    assert offered.tools[0].type == "web_search"  # echoed as sent
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="m", input="tell me", tools=[{"type": "web_search"}],
                                tool_choice={"type": "web_search"})
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "tool_choice" and body["code"] == "web_search_unavailable"
    assert "[web_search].provider" in body["message"]


@pytest.fixture(scope="module")
def searching_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/make_model.py's `tool` preset (random tiny weights whose greedy path is scripted) with its one
    scripted call made a web_search call instead of get_weather."""
    spec = importlib.util.spec_from_file_location("ddx_make_model_web_search", REPO / "scripts" / "make_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.SCRIPTED_CALL = json.dumps({"name": "web_search", "arguments": {"query": "mlx unified memory"}},
                                      separators=(",", ":"))
    return module.build_model(tmp_path_factory.mktemp("searching_model"), preset="tool", seed=0)


@pytest.mark.slow
def test_tiny_real_model_forced_to_search(server_factory: Any, searching_model_dir: Path,
                                          internet: fake.Internet) -> None:
    client = client_for(server_factory({
        "llm.use_real_model": True, "llm.model": str(searching_model_dir), "web_search.provider": "searxng",
        "web_search.url": internet.url(""), "web_search.allow_private_networks": True}))
    before = len(internet.searches())
    response = client.responses.create(model=str(searching_model_dir), input="What is MLX?", max_output_tokens=80,
                                       tools=[{"type": "web_search"}], tool_choice={"type": "web_search"},
                                       max_tool_calls=1, include=SOURCES, temperature=0)
    assert response.status == "completed", response
    # the tool preset's template opens a think block: reasoning items may come before the call
    search = next(item for item in response.output if item.type != "reasoning")
    assert search.type == "web_search_call" and search.status == "completed"
    assert search.action.type == "search" and search.action.query == "mlx unified memory"
    assert search.action.sources[0].url == internet.url("/pages/mlx.html", "localhost")
    assert internet.searches()[before].query["q"] == ["mlx unified memory"]  # what the model wrote was searched
    # the search's text went back into the prompt: the second generation read far more than the question
    assert response.usage.input_tokens > 500
    # max_tool_calls=1: the model then answers with no tools offered (this model's answer, a call, is dropped)
    assert [item.type for item in response.output if item.type not in ("message", "reasoning")] == ["web_search_call"]
