"""The protocol models of responses/wire.py against real answers of a mock-mode server: every Responses and
Conversations route's JSON fits its documented model, each item fits the model of its own type (not only the
agents' catch-all), and the committed OpenAPI document names those models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from ddx_omni.responses import wire

from .support import ITEM_MODELS

REPO = Path(__file__).resolve().parents[2]
SCRIPT = [
    {"match": "(?i)weather", "reply": {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}},
    {"match": "sunny", "reply": {"content": "It is sunny in Paris.", "reasoning": "The tool said so."}},
]
TOOL = {"type": "function", "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture
def api(server_factory: Any, tmp_path: Path) -> Iterator[httpx.Client]:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    url = server_factory({"llm.mock_script": str(script)})
    with httpx.Client(base_url=f"{url}/v1", timeout=30) as client:
        yield client


def fits(model: type[BaseModel], answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    model.model_validate(body)
    for item in body.get("output", body.get("data", [body] if "type" in body else [])):
        ITEM_MODELS[item["type"]].model_validate(item)  # KeyError: an item type this test did not expect
    return body


def test_response_routes_fit_their_models(api: httpx.Client) -> None:
    called = fits(wire.Response, api.post("/responses", json={"input": "weather?", "tools": [TOOL]}))
    call = called["output"][0]
    assert call["type"] == "function_call"
    answered = fits(wire.Response, api.post("/responses", json={
        "previous_response_id": called["id"], "tools": [TOOL],
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]}))
    assert [item["type"] for item in answered["output"]] == ["reasoning", "message"]
    assert answered["usage"]["total_tokens"] > 0
    fits(wire.Response, api.get(f"/responses/{answered['id']}"))
    fits(wire.ItemList, api.get(f"/responses/{answered['id']}/input_items"))
    fits(wire.InputTokens, api.post("/responses/input_tokens", json={"input": "hello"}))
    deleted = fits(wire.ResponseDeleted, api.delete(f"/responses/{answered['id']}"))
    assert deleted == {"id": answered["id"], "object": "response.deleted", "deleted": True}


def test_conversation_routes_fit_their_models(api: httpx.Client) -> None:
    conversation = fits(wire.Conversation, api.post("/conversations", json={
        "metadata": {"topic": "wire"}, "items": [{"role": "user", "content": "hi"}]}))
    cid = conversation["id"]
    added = fits(wire.ItemList, api.post(f"/conversations/{cid}/items", json={"items": [
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": False},
        {"type": "compaction", "encrypted_content": "opaque"}]}))
    listed = fits(wire.ItemList, api.get(f"/conversations/{cid}/items", params={"order": "asc"}))
    assert [i["type"] for i in listed["data"]] == ["message"] + [i["type"] for i in added["data"]]
    fits(wire.MessageItem, api.get(f"/conversations/{cid}/items/{listed['data'][0]['id']}"))
    fits(wire.Conversation, api.post(f"/conversations/{cid}", json={"metadata": {"topic": "changed"}}))
    fits(wire.Conversation, api.delete(f"/conversations/{cid}/items/{listed['data'][0]['id']}"))
    fits(wire.ConversationDeleted, api.delete(f"/conversations/{cid}"))


def test_openapi_documents_every_response_route_and_error_envelope() -> None:
    document = json.loads((REPO / "openapi" / "openapi.json").read_text())
    paths = {p: ops for p, ops in document["paths"].items() if p.startswith(("/v1/responses", "/v1/conversations"))}
    assert len(paths) == 9
    for path, operations in paths.items():
        for method, operation in operations.items():
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            assert schema, f"{method} {path} has an empty 200 schema"
            assert operation["responses"]["default"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/OpenAIErrorBody"}
    assert "HTTPValidationError" not in json.dumps(document)
    messages = document["paths"]["/v1/messages"]["post"]["responses"]
    assert "422" not in messages and messages["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AnthropicErrorBody"}
