"""MCP through /v1/responses, end to end: real MCP servers in subprocesses (the mcp package's MCPServer over
streamable HTTP, SSE and stdio; npm's server-everything), ddx-omni in scripted mock mode (its calls are exact),
and the openai SDK as the client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import build_settings, live_server, wait_for
from tests.responses.support import assert_wire, check_event_order, read_sse

from .mcp_support import (
    call,
    client_for,
    say,
    silent_tcp_server,
    stdio_entry,
    write_script,
)

RULES = [
    ("please add", call("add", a=2, b=3)),
    (r"2 \+ 3 = 5", say("The sum is 5.")),
    ("echo me", call("echo", text="hi")),
    ("echo: hi", say("It said hi.")),
    ("explode", call("boom")),
    ("sleepy", call("nap", seconds=30)),
    ("call everything", call("echo", message="hello")),
    ("weather please", call("weather", city="Oslo")),
    ("flood please", call("flood", size=100)),
    ("temp_c", say("Mild.")),
    ("truncated", say("Long.")),
    ("Echo: hello", say("Everything echoed.")),
    ("remote add", call("demo__add", a=2, b=3)),
    ("local add", call("local__add", a=2, b=3)),
    ("declined", say("OK, I will not.")),
    ("Error", say("The tool failed.")),
    (".", say("Nothing to do.")),
]


@pytest.fixture
def omni(server_factory: Any, tmp_path: Path) -> Any:
    """omni(**overrides) → (base URL, SDK client) of ddx-omni in mock mode, driven by RULES."""
    script = write_script(tmp_path / "script.json", RULES)

    def start(**overrides: Any) -> tuple[str, openai.OpenAI]:
        url = server_factory({"llm.mock_script": str(script), **overrides})
        return url, client_for(url)

    return start


def mcp(url: str, label: str = "demo", **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": label, "server_url": url, "require_approval": "never", **extra}


def test_list_call_answer_over_streamable_http(omni: Any, demo_server: Any) -> None:
    server = demo_server()
    _, client = omni()
    response = client.responses.create(model="m", input="please add", tools=[mcp(server.url)])
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    listing, done, answer = response.output
    assert listing.server_label == "demo" and listing.error is None
    add = next(tool for tool in listing.tools if tool.name == "add")
    assert add.description == "Add two integers" and add.input_schema["required"] == ["a", "b"]
    assert (done.name, json.loads(done.arguments), done.output, done.status) == ("add", {"a": 2, "b": 3},
                                                                                 "2 + 3 = 5", "completed")
    assert done.error is None and done.server_label == "demo" and done.id.startswith("mcp_")
    assert response.output_text == "The sum is 5."
    assert response.usage.output_tokens > 3  # both generations: the call and the answer
    assert server.counts() == {"list": 1, "call": 1}
    assert client.responses.retrieve(response.id).output == response.output
    assert_wire(response)


def test_listing_is_reused_across_a_three_turn_chain_and_a_conversation(omni: Any, demo_server: Any) -> None:
    server = demo_server()
    _, client = omni()
    previous = None
    for _ in range(3):
        turn = client.responses.create(model="m", input="please add", tools=[mcp(server.url)],
                                       previous_response_id=previous)
        assert turn.output_text == "The sum is 5."
        previous = turn.id
    assert server.counts() == {"list": 1, "call": 3}  # the server's own counter: listed once
    assert [item.type for item in turn.output] == ["mcp_call", "message"]
    conversation = client.conversations.create()
    for _ in range(2):
        client.responses.create(model="m", input="echo me", tools=[mcp(server.url)], conversation=conversation.id)
    assert server.counts() == {"list": 2, "call": 5}
    listings = [i for i in client.conversations.items.list(conversation.id) if i.type == "mcp_list_tools"]
    assert len(listings) == 1


def processes_with(needle: str) -> list[int]:
    """Pids whose command line contains `needle` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_stdio_server_configured_by_the_operator(tmp_path: Path) -> None:
    counts = tmp_path / "stdio-counts.json"
    script = write_script(tmp_path / "script.json", RULES)
    settings = build_settings(tmp_path, {"llm.mock_script": str(script),
                                         "responses.mcp_servers": [stdio_entry("local", counts)]})
    with live_server(settings) as url:
        client = client_for(url)
        tool = {"type": "mcp", "server_label": "local", "require_approval": "never"}
        response = client.responses.create(model="m", input="echo me", tools=[tool])
        assert response.output_text == "It said hi." and response.output[1].output == "echo: hi"
        again = client.responses.create(model="m", input="please add", tools=[tool], previous_response_id=response.id)
        assert again.output_text == "The sum is 5."
        assert json.loads(counts.read_text()) == {"list": 1, "call": 2}  # one process, kept, listed once
        assert len(processes_with(str(counts))) == 1
        with pytest.raises(openai.BadRequestError) as err:  # no server_url and no such configured label
            client.responses.create(model="m", input="x", tools=[{"type": "mcp", "server_label": "other"}])
        assert err.value.body["param"] == "tools[0].server_url" and "mcp_servers" in err.value.body["message"]
    wait_for(lambda: processes_with(str(counts)) == [], timeout=15)  # stopping ddx-omni ends the server


def test_approvals_always_then_approve_or_decline(omni: Any, demo_server: Any) -> None:
    server = demo_server()
    _, client = omni()
    tool = mcp(server.url, require_approval="always")
    asked = client.responses.create(model="m", input="please add", tools=[tool])
    assert asked.status == "completed" and [i.type for i in asked.output] == ["mcp_list_tools", "mcp_approval_request"]
    request = asked.output[1]
    assert (request.name, json.loads(request.arguments), request.server_label) == ("add", {"a": 2, "b": 3}, "demo")
    assert server.counts()["call"] == 0
    approved = client.responses.create(model="m", tools=[tool], previous_response_id=asked.id, input=[
        {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}])
    assert [i.type for i in approved.output] == ["mcp_call", "message"]
    assert approved.output[0].approval_request_id == request.id and approved.output[0].output == "2 + 3 = 5"
    assert approved.output_text == "The sum is 5." and server.counts() == {"list": 1, "call": 1}
    assert_wire(asked)
    assert_wire(approved)

    asked_again = client.responses.create(model="m", input="please add", tools=[tool], previous_response_id=approved.id)
    declined = client.responses.create(model="m", tools=[tool], previous_response_id=asked_again.id, input=[
        {"type": "mcp_approval_response", "approval_request_id": asked_again.output[0].id, "approve": False,
         "reason": "not now"}])
    assert [i.type for i in declined.output] == ["message"] and declined.output_text == "OK, I will not."
    assert server.counts()["call"] == 1
    with pytest.raises(openai.BadRequestError):  # an answer to no request of this chain
        client.responses.create(model="m", tools=[tool], previous_response_id=declined.id, input=[
            {"type": "mcp_approval_response", "approval_request_id": "mcpr_unknown", "approve": True}])


def test_per_tool_approval_and_allowed_tools(omni: Any, demo_server: Any) -> None:
    server = demo_server()
    _, client = omni()
    tool = mcp(server.url, require_approval={"never": {"tool_names": ["add"]}})
    runs = client.responses.create(model="m", input="please add", tools=[tool])
    assert runs.output_text == "The sum is 5."
    held = client.responses.create(model="m", input="echo me", tools=[tool], previous_response_id=runs.id)
    assert [i.type for i in held.output] == ["mcp_approval_request"]
    only_echo = mcp(server.url, allowed_tools=["echo"])
    refused = client.responses.create(model="m", input="please add", tools=[only_echo])
    assert "'add', which this request does not offer (offered: echo)" in refused.output_text
    filtered = mcp(server.url, allowed_tools={"tool_names": ["add", "boom"]})
    listed = client.responses.create(model="m", input="please add", tools=[filtered])
    assert listed.output_text == "The sum is 5."
    assert server.counts()["call"] == 2


def test_unreachable_and_hanging_servers_become_item_errors(omni: Any) -> None:
    url, client = omni(**{"responses.mcp_timeout_s": 1})
    from tests.conftest import free_port

    dead = client.responses.create(model="m", input="please add",  # a forced choice of it falls back to auto
                                   tools=[mcp(f"http://127.0.0.1:{free_port()}/mcp")],
                                   tool_choice={"type": "mcp", "server_label": "demo", "name": "add"})
    assert dead.status == "completed" and dead.output[0].type == "mcp_list_tools"
    assert dead.output[0].error and dead.output[0].tools == []
    assert "does not offer" in dead.output_text  # no tools were offered: the model answered without them
    with silent_tcp_server() as hung_url:
        events, _ = read_sse(url, {"model": "m", "input": "please add", "tools": [mcp(hung_url)]})
    final = check_event_order(events)
    assert "response.mcp_list_tools.failed" in [e["type"] for e in events]
    assert final["status"] == "completed" and "did not answer" in final["output"][0]["error"]
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200


def test_a_raising_tool_and_a_call_that_times_out(omni: Any, demo_server: Any) -> None:
    server = demo_server()
    _, client = omni(**{"responses.mcp_timeout_s": 5})  # the session is opened (and kept) by the first call
    raised = client.responses.create(model="m", input="explode", tools=[mcp(server.url)])
    failed = raised.output[1]
    assert failed.type == "mcp_call" and failed.status == "failed" and failed.output is None
    assert failed.error.type == "mcp_tool_execution_error" and "boom" in json.dumps(failed.error.content)
    assert raised.output_text == "The tool failed."
    slow = client.responses.create(model="m", input="sleepy", tools=[mcp(server.url)], previous_response_id=raised.id)
    timed_out = slow.output[0]
    assert timed_out.status == "failed" and timed_out.error.type == "http_error" and timed_out.error.code == 504
    assert slow.status == "completed" and slow.output_text == "The tool failed."
    again = client.responses.create(model="m", input="please add", tools=[mcp(server.url)],
                                    previous_response_id=slow.id)
    assert again.output_text == "The sum is 5."  # the server and ddx-omni carry on


def test_secrets_are_sent_but_never_stored_or_echoed(omni: Any, demo_server: Any, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    token = "tok-SECRET-4711"
    server = demo_server(token=token)
    _, client = omni()
    caplog.set_level("DEBUG")
    with_auth = mcp(server.url, authorization=token, headers={"X-Extra": "hdr-SECRET-0815"})
    response = client.responses.create(model="m", input="please add", tools=[with_auth])
    assert response.output_text == "The sum is 5."  # the server refuses requests without the token
    echoed = response.model_dump()["tools"][0]
    assert echoed["authorization"] == "<redacted>" and echoed["headers"] == {"X-Extra": "<redacted>"}
    assert client.responses.retrieve(response.id).model_dump()["tools"][0] == echoed
    without = client.responses.create(model="m", input="please add", tools=[mcp(server.url)])
    assert without.output[0].error  # 401 from the server: the listing failed
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("responses.db*"))
    assert stored and b"SECRET" not in stored
    assert "SECRET" not in caplog.text


def test_stream_event_order_of_list_call_and_answer(omni: Any, demo_server: Any) -> None:
    server = demo_server()
    url, _ = omni()
    events, _ = read_sse(url, {"model": "m", "input": "please add", "tools": [mcp(server.url)]})
    final = check_event_order(events)  # with the MCP item grammar of mcp_support
    kinds = [e["type"] for e in events]
    start = kinds.index("response.mcp_call.in_progress")
    assert kinds[start - 1:start + 5] == [
        "response.output_item.added", "response.mcp_call.in_progress", "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done", "response.mcp_call.completed", "response.output_item.done"]
    assert kinds.index("response.mcp_list_tools.completed") < start
    assert [item["type"] for item in final["output"]] == ["mcp_list_tools", "mcp_call", "message"]


def test_same_tool_name_on_two_servers_gets_prefixed(omni: Any, demo_server: Any, tmp_path: Path) -> None:
    remote = demo_server()
    counts = tmp_path / "local-counts.json"
    _, client = omni(**{"responses.mcp_servers": [stdio_entry("local", counts)]})
    tools = [mcp(remote.url), {"type": "mcp", "server_label": "local", "require_approval": "never"}]
    first = client.responses.create(model="m", input="local add", tools=tools)
    assert first.output_text == "The sum is 5." and first.output[2].server_label == "local"
    assert first.output[2].name == "add"  # the item names the server's own tool
    second = client.responses.create(model="m", input="remote add", tools=tools, previous_response_id=first.id)
    assert second.output[0].server_label == "demo"
    assert remote.counts()["call"] == 1 and json.loads(counts.read_text())["call"] == 1


def test_sse_transport_and_server_everything(omni: Any, demo_server: Any, everything: str) -> None:
    sse = demo_server(mode="sse")
    _, client = omni()
    over_sse = client.responses.create(model="m", input="please add", tools=[mcp(sse.url)])
    assert over_sse.output_text == "The sum is 5."
    response = client.responses.create(model="m", input="call everything", tools=[mcp(everything, "everything")])
    names = {tool.name for tool in response.output[0].tools}
    assert {"echo", "get-sum"} <= names
    assert response.output[1].output.startswith("Echo: hello") and response.output_text == "Everything echoed."


def test_request_errors(omni: Any) -> None:
    url, client = omni(**{"responses.mcp_allowed_urls": ["http://127.0.0.1:*"]})
    bad = [
        ({"type": "mcp", "server_label": "x", "server_url": "http://example.com/mcp"}, "mcp_allowed_urls"),
        ({"type": "mcp", "server_url": "http://127.0.0.1:1/mcp"}, "server_label"),
        ({"type": "mcp", "server_label": "x", "server_url": "http://127.0.0.1:1/mcp", "require_approval": "x"},
         "require_approval"),
        ({"type": "mcp", "server_label": "x", "server_url": "http://127.0.0.1:1/mcp", "allowed_tools": "x"},
         "allowed_tools"),
        ({"type": "mcp", "server_label": "x", "connector_id": "connector_gmail"}, "connector"),
        ({"type": "mcp", "server_label": "two words", "server_url": "http://127.0.0.1:1/mcp"}, "server_label"),
        ({"type": "mcp", "server_label": "x", "command": "sh", "args": ["-c", "true"]}, "unknown"),  # never a process
    ]
    for tool, needle in bad:
        answer = httpx.post(f"{url}/v1/responses", json={"model": "m", "input": "x", "tools": [tool]}, timeout=30)
        assert answer.status_code == 400, answer.text
        assert needle in answer.json()["error"]["message"] + answer.json()["error"]["param"]
    twice = [mcp("http://127.0.0.1:1/mcp"), mcp("http://127.0.0.1:2/mcp")]
    answer = httpx.post(f"{url}/v1/responses", json={"model": "m", "input": "x", "tools": twice}, timeout=30)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "tools[1].server_label"


@pytest.mark.slow
def test_forced_tool_choice_gives_a_valid_call_on_the_tiny_real_model(server_factory: Any, tiny_model_dir: Path,
                                                                       demo_server: Any) -> None:
    """Random weights: only constrained decoding makes this a call of `add` with two integers."""
    server = demo_server()
    url = server_factory({"llm.use_real_model": True, "llm.model": str(tiny_model_dir)})
    client = client_for(url)
    response = client.responses.create(
        model=str(tiny_model_dir), input="add two numbers", temperature=0, max_output_tokens=60,
        tools=[mcp(server.url)], tool_choice={"type": "mcp", "server_label": "demo", "name": "add"})
    listing, done = response.output[:2]
    assert listing.type == "mcp_list_tools" and done.type == "mcp_call" and done.name == "add"
    arguments = json.loads(done.arguments)
    assert set(arguments) == {"a", "b"} and all(isinstance(v, int) for v in arguments.values())
    assert done.status == "completed"
    assert done.output == f"{arguments['a']} + {arguments['b']} = {sum(arguments.values())}"
    assert server.counts()["call"] >= 1 and response.usage.output_tokens <= 60


def test_what_the_model_reads_of_a_result(omni: Any, demo_server: Any) -> None:
    server = demo_server()
    _, client = omni(**{"responses.mcp_max_output_chars": 40})
    data = client.responses.create(model="m", input="weather please", tools=[mcp(server.url)])
    assert json.loads(data.output[1].output) == {"city": "Oslo", "temp_c": 21}  # once, not text + JSON twice
    assert data.output_text == "Mild."
    flood = client.responses.create(model="m", input="flood please", tools=[mcp(server.url)])
    assert flood.output[1].output == "x" * 40 + "\n[truncated: 60 more characters]"
    assert flood.output_text == "Long."


def test_an_approval_request_streams_as_one_item(omni: Any, demo_server: Any) -> None:
    server = demo_server()
    url, _ = omni()
    tool = mcp(server.url, require_approval="always")
    events, _ = read_sse(url, {"model": "m", "input": "please add", "tools": [tool]})
    final = check_event_order(events)
    assert [item["type"] for item in final["output"]] == ["mcp_list_tools", "mcp_approval_request"]
    kinds = [e["type"] for e in events]
    assert kinds[-3:] == ["response.output_item.added", "response.output_item.done", "response.completed"]


def test_concurrent_responses_share_one_kept_session(omni: Any, demo_server: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = demo_server()
    _, client = omni()
    first = client.responses.create(model="m", input="please add", tools=[mcp(server.url)])
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.responses.create(
            model="m", input="please add", tools=[mcp(server.url)], previous_response_id=first.id), range(4)))
    assert [a.output_text for a in answers] == ["The sum is 5."] * 4
    assert server.counts() == {"list": 1, "call": 5}  # one listing for the chain, every call through one session
