"""Claude Code (`claude -p`, npm @anthropic-ai/claude-code) against ddx-omni's Anthropic Messages API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import KEY, Server, clean_env, cli, run

MODEL = "ddx-mock"


def claude(server: Server, prompt: str, home: Path, *extra: str) -> dict[str, Any]:
    env = {**clean_env(home), "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY,
           "ANTHROPIC_MODEL": MODEL, "ANTHROPIC_DEFAULT_HAIKU_MODEL": MODEL,
           "ANTHROPIC_DEFAULT_SONNET_MODEL": MODEL, "ANTHROPIC_DEFAULT_OPUS_MODEL": MODEL,
           "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    done = run([cli("claude"), "-p", prompt, "--output-format", "json", *extra], env, home)
    assert done.returncode == 0, (done.stdout, done.stderr, server.log.read_text()[-3000:])
    return json.loads(done.stdout)


def test_claude_code_prints_the_scripted_answer(ddx: Any, tmp_path: Path) -> None:
    server = ddx([{"match": "say hi", "reply": {"reasoning": "A greeting is asked for.",
                                                "content": "Hello from the ddx-omni mock."}}])
    result = claude(server, "say hi", tmp_path)
    assert result["type"] == "result" and result["subtype"] == "success" and result["is_error"] is False
    assert result["result"] == "Hello from the ddx-omni mock."
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    assert "POST /v1/messages?beta=true" in server.log.read_text()


def test_claude_code_runs_a_scripted_read_and_sends_the_tool_result(ddx: Any, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret word is pumpernickel\n")
    # The answer rule matches only the file's content, which reaches the model only in the tool_result.
    server = ddx([{"match": "pumpernickel", "reply": {"content": "The file says pumpernickel."}},
                  {"match": "read the secret file", "reply": {
                      "content": "Reading it.", "tool_calls": [{"name": "Read",
                                                                "arguments": {"file_path": str(secret)}}]}}])
    result = claude(server, "please read the secret file", tmp_path, "--allowedTools", "Read")
    assert result["subtype"] == "success" and result["result"] == "The file says pumpernickel."
    assert result["num_turns"] == 2
