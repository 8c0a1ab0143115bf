"""What Codex sends to /v1/responses (shapes recorded from codex-cli 0.171 against this server), accepted:
namespace, web_search and custom tools, agent items in the re-sent history, include values."""

from __future__ import annotations

from typing import Any

import httpx

from ddx_omni.responses.service import create_service
from tests.responses.support import FakeLlm, ScriptedEngine

EXEC = {"type": "function", "name": "exec_command", "description": "Runs a shell command.", "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.",
             "tools": [{"type": "function", "name": "close_agent", "parameters": {"type": "object"}}]}
TOOLS = [EXEC, NAMESPACE, {"type": "web_search", "external_web_access": False},
         {"type": "custom", "name": "apply_patch", "description": "Patch files.",
          "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}]


def codex_body(history: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "ddx-mock", "instructions": "You are Codex.", "input": history, "tools": TOOLS,
            "tool_choice": "auto", "parallel_tool_calls": True, "reasoning": {"summary": "auto"}, "store": False,
            "stream": True, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "thread-1",
            "client_metadata": {"thread_id": "thread-1"}}


def test_a_codex_turn_with_its_tools_and_agent_items(server_factory: Any, make_settings: Any) -> None:
    engine = ScriptedEngine()
    llm = FakeLlm(engine)
    url = server_factory(None, {"llm": llm, "responses": create_service(make_settings(), llm)})
    history = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be careful."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}], "encrypted_content": None},
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "patched"},
        {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "x"}},
        {"type": "function_call", "call_id": "c2", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
        {"type": "function_call_output", "call_id": "c2", "output": "a.txt"},
    ]
    with httpx.stream("POST", f"{url}/v1/responses", json=codex_body(history), timeout=30) as response:
        assert response.status_code == 200, response.read()
        raw = "".join(response.iter_text())
    assert "event: response.completed" in raw
    # only the tools the engines can serve reach the model; the history keeps every turn a template can show
    assert [t["function"]["name"] for t in engine.params[0].tools] == ["exec_command"]
    assert engine.prompts[0] == [
        {"role": "system", "content": "You are Codex."}, {"role": "system", "content": "Be careful."},
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "apply_patch",
                                                          "arguments": '{"input": "*** Begin Patch"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "patched"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}}]},
        {"role": "tool", "tool_call_id": "c2", "content": "a.txt"}]


def test_models_list_answers_codex_client_version_query(server_factory: Any) -> None:
    url = server_factory()
    response = httpx.get(f"{url}/v1/models?client_version=0.171.0", timeout=30)
    assert response.status_code == 200 and response.json()["data"]
