"""Codex (`codex exec`, npm @openai/codex) with a custom provider (wire_api = "responses") against ddx-omni."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import KEY, Server, clean_env, cli, run

CONFIG = """model = "ddx-mock"
model_provider = "ddx"

[model_providers.ddx]
name = "ddx-omni"
base_url = "{url}/v1"
env_key = "DDX_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


def codex(server: Server, prompt: str, home: Path) -> list[dict[str, Any]]:
    """The run's JSONL events. Unsandboxed (`-s danger-full-access`): Codex refuses to put its sandbox helper
    under a temporary directory, where the test's CODEX_HOME is, and the sandbox is not what is tested here."""
    codex_home = home / "codex-home"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CONFIG.format(url=server.url))
    env = {**clean_env(home), "CODEX_HOME": str(codex_home), "DDX_API_KEY": KEY}
    done = run([cli("codex"), "exec", "--skip-git-repo-check", "--ephemeral", "--json", "-s", "danger-full-access",
                prompt], env, home)
    assert done.returncode == 0, (done.stdout, done.stderr, server.log.read_text()[-3000:])
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == kind]


def test_codex_exec_completes_with_the_scripted_answer(ddx: Any, tmp_path: Path) -> None:
    server = ddx([{"match": "say hi", "reply": {"content": "Hello from the ddx-omni mock."}}])
    events = codex(server, "say hi", tmp_path)
    assert [m["text"] for m in _items(events, "agent_message")] == ["Hello from the ddx-omni mock."]
    assert events[-1]["type"] == "turn.completed" and events[-1]["usage"]["input_tokens"] > 0
    assert "POST /v1/responses" in server.log.read_text()


def test_codex_runs_a_scripted_shell_call_and_returns_its_output(ddx: Any, tmp_path: Path) -> None:
    # The answer rule matches only the command's output (6*7 is computed by the shell), which reaches the model
    # only as the function_call_output Codex sends back (the scripted reasoning makes the
    # turn carry a reasoning item too).
    server = ddx([{"match": "ddx-42", "reply": {"content": "The command printed ddx-42."}},
                  {"match": "run the check", "reply": {
                      "reasoning": "The user wants the check run.", "content": "Running it.",
                      "tool_calls": [{"name": "exec_command", "arguments": {"cmd": "echo ddx-$((6*7))"}}]}}])
    events = codex(server, "run the check", tmp_path)
    commands = _items(events, "command_execution")
    assert len(commands) == 1 and commands[0]["exit_code"] == 0 and commands[0]["aggregated_output"] == "ddx-42\n"
    assert [m["text"] for m in _items(events, "agent_message")] == ["Running it.", "The command printed ddx-42."]
    assert events[-1]["type"] == "turn.completed"
