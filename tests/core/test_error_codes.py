"""The one error-code table: every code the source raises is in it, its docs copy matches it, and a raised
error gets its status and OpenAI type from it (not from whoever raised it)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ddx_omni.core.errors import CODES, PASS_THROUGH, ApiError, api_error, install_error_handlers

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "ddx_omni"
# The callables that build an HTTP error. Other `code`s (MCP/JSON-RPC numbers, Deepgram close reasons, a failed
# response's stored `error.code`) are not HTTP error codes and are left alone.
_ERROR_MAKERS = {"ApiError", "api_error", "bad_request", "image_error", "RequestInvalid", "ContextTooLong",
                 "LlmError", "ModelNotFound", "ModelUnavailable", "NotFound", "Unauthorized", "PayloadTooLarge"}


def _code_nodes(node: ast.AST) -> list[ast.expr]:
    """The expressions that give an error its code: `code=` keywords and positional codes of the error makers,
    and `code = …` (or `status, code = …`) class attributes of ApiError subclasses."""
    if isinstance(node, ast.Call):
        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
        if name not in _ERROR_MAKERS:
            return []
        found = [k.value for k in node.keywords if k.arg == "code"]
        position = {"api_error": 0, "bad_request": 2}.get(name)
        if position is not None and len(node.args) > position:
            found.append(node.args[position])
        return found
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target, value = node.targets[0], node.value
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            target, value = target.elts[-1], value.elts[-1]
        if getattr(target, "id", "") == "code":
            return [value]
    return []


def _raised_codes() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            for arg in _code_nodes(node):
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found[arg.value] = f"{path.relative_to(ROOT)}:{node.lineno}"  # type: ignore[attr-defined]
    return found


def test_every_raised_code_is_in_the_table() -> None:
    raised = _raised_codes()
    assert {"request_invalid", "invalid_request", "context_length_exceeded", "bad_request"} <= set(raised)
    missing = {code: where for code, where in raised.items() if code not in CODES}
    assert not missing, f"codes raised but not in core/errors.py CODES: {missing}"


def test_docs_table_equals_the_code_table() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \| `([a-z_]+)` \|$", text, re.M)
    assert {code: (int(status), kind) for code, status, kind in rows} == {
        code: (spec.status, spec.openai_type) for code, spec in CODES.items()}


def test_status_comes_from_the_table() -> None:
    assert api_error("invalid_request", "x").status == 400
    assert api_error("request_invalid", "x").status == 422
    assert api_error("context_length_exceeded", "x").status == 400
    assert ApiError("boom").code == "internal_error" and ApiError("boom").status == 500
    assert all(spec.status >= 400 for spec in CODES.values()) and set(CODES) >= PASS_THROUGH


def test_wire_envelope_carries_the_tables_type() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/responses/x")
    async def responses_overflow() -> None:
        raise api_error("context_length_exceeded", "too long", "input")

    @app.get("/v1/listen/x")
    async def speech_refusal() -> None:
        raise api_error("too_many_containers", "busy")

    @app.get("/v1/messages/x")
    async def anthropic_invalid() -> None:
        raise api_error("request_invalid", "bad")

    client = TestClient(app)
    overflow = client.get("/v1/responses/x")
    assert overflow.status_code == 400
    assert overflow.json()["error"] == {"message": "too long", "type": "invalid_request_error",
                                        "code": "context_length_exceeded", "param": "input"}
    busy = client.get("/v1/listen/x")
    assert busy.status_code == 429 and busy.json() == {"code": "too_many_containers", "message": "busy"}
    refused = client.get("/v1/messages/x")  # Anthropic parity: 400, not 422
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error"
