"""Fixtures and checkers of the MCP tests: real MCP servers as subprocesses (tests/tools/mcp_demo_server.py over
streamable HTTP, SSE or stdio; npm's server-everything), a ddx-omni server in scripted mock mode, and the
strict event grammar of MCP items."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import free_port, wait_for
from tests.responses.support import BUILTIN_EVENTS

DEMO = Path(__file__).with_name("mcp_demo_server.py")


class DemoServer:
    """A running demo server: its URL, and its own counts of tools/list and tools/call."""

    def __init__(self, url: str, counts_path: Path, process: subprocess.Popen[bytes]) -> None:
        self.url, self.counts_path, self.process = url, counts_path, process

    def counts(self) -> dict[str, int]:
        return json.loads(self.counts_path.read_text())


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    def listening() -> bool:
        assert process.poll() is None, "the MCP server exited"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=timeout, interval=0.05)


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Callable[..., DemoServer]]:
    """demo_server(mode="http"|"sse", token=None) → a demo MCP server in a subprocess on a free port."""
    with contextlib.ExitStack() as stack:
        def start(mode: str = "http", token: str | None = None) -> DemoServer:
            port = free_port()
            counts = tmp_path / f"counts-{port}.json"
            log = stack.enter_context((tmp_path / f"mcp-{port}.log").open("wb"))
            args = [sys.executable, str(DEMO), mode, str(counts), str(port), *([token] if token else [])]
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, process)
            wait_port(port, process)
            path = "/sse" if mode == "sse" else "/mcp"
            return DemoServer(f"http://127.0.0.1:{port}{path}", counts, process)

        yield start


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def stdio_entry(label: str, counts: Path) -> dict[str, Any]:
    """A [[responses.mcp_servers]] entry that has ddx-omni start the demo server over stdio."""
    return {"label": label, "command": sys.executable, "args": [str(DEMO), "stdio", str(counts)]}


@pytest.fixture
def everything() -> Iterator[str]:
    """npm's @modelcontextprotocol/server-everything over streamable HTTP (installed by .ci/run)."""
    binary = shutil.which("mcp-server-everything")
    if binary is None:
        missing = "mcp-server-everything is not installed (npm install -g @modelcontextprotocol/server-everything)"
        if os.environ.get("CI_REQUIRE_BROWSER"):  # .ci/run installed it: missing is a failure, not a skip
            pytest.fail(missing)
        pytest.skip(missing)
    port = free_port()
    process = subprocess.Popen([binary, "streamableHttp"], env={**os.environ, "PORT": str(port)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        _stop(process)


@contextlib.contextmanager
def silent_tcp_server() -> Iterator[str]:
    """A server that accepts connections and never answers: an MCP server that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def write_script(path: Path, rules: list[tuple[str, dict[str, Any]]]) -> Path:
    """A [llm].mock_script file: (regex, reply) rules, first match wins."""
    path.write_text(json.dumps([{"match": match, "reply": reply} for match, reply in rules]))
    return path


def client_for(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=60, max_retries=0)


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def say(text: str) -> dict[str, Any]:
    return {"content": text}


def until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# ---- the strict grammar of MCP items' events (REFERENCE §8: added → in_progress → arguments → end → done) ----

def _check_mcp_call(added: dict[str, Any], events: list[dict[str, Any]], done: dict[str, Any]) -> None:
    assert added["arguments"] == "" and added["status"] == "in_progress" and added["output"] is None
    kinds = [e["type"] for e in events]
    end = "response.mcp_call.completed" if done["status"] == "completed" else "response.mcp_call.failed"
    assert done["status"] in ("completed", "failed")
    assert kinds == ["response.mcp_call.in_progress", "response.mcp_call_arguments.delta",
                     "response.mcp_call_arguments.done", end], kinds
    assert events[1]["delta"] == events[2]["arguments"] == done["arguments"]
    assert (done["output"] is not None) == (done["status"] == "completed") == (done["error"] is None)


def _check_mcp_list_tools(added: dict[str, Any], events: list[dict[str, Any]], done: dict[str, Any]) -> None:
    assert added["tools"] == [] and added["error"] is None
    end = "response.mcp_list_tools.failed" if done["error"] else "response.mcp_list_tools.completed"
    assert [e["type"] for e in events] == ["response.mcp_list_tools.in_progress", end]


def _check_approval_request(added: dict[str, Any], events: list[dict[str, Any]], done: dict[str, Any]) -> None:
    assert events == [] and added == done and json.loads(done["arguments"]) is not None


BUILTIN_EVENTS.update({"mcp_call": _check_mcp_call, "mcp_list_tools": _check_mcp_list_tools,
                       "mcp_approval_request": _check_approval_request})
