"""The OpenAPI document: FastAPI's, with every error status described by the envelope the API really sends.

FastAPI documents a 422 `HTTPValidationError` (`detail`: a list) on every route with parameters; this server
answers errors with core/errors.py's envelope instead (whose `detail` may be anything: a list of validation
errors, a string, an object). So each operation gets its family's envelope (plain, OpenAI or Anthropic) on
every error status it can answer with, and as its `default` response for the rest.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from .auth import ProtectedRoutes, document_security
from .errors import ANTHROPIC_PREFIXES, OPENAI_PREFIXES


class ErrorBody(BaseModel):
    """Every error: a code from the table in docs/operations.md, a message, and what else is known."""

    code: str
    message: str
    detail: Any = Field(None, description="validation errors (a list), a reason (a string) or an object")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None
    param: str | None


class OpenAIErrorBody(ErrorBody):
    """On the OpenAI-compatible routes the same body also carries OpenAI's `error` object."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicErrorBody(ErrorBody):
    """On the Anthropic routes: Anthropic's `{type: "error", error: {type, message}}` (plus code and message)."""

    type: Literal["error"]
    error: AnthropicErrorDetail


# A route that streams with `stream: true` answers 200 with server-sent events (described per API in docs/)
# instead of its JSON model: `responses=SSE_RESPONSE` documents both.
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {"schema": {
    "type": "object", "description": "one server-sent event", "required": ["data"],
    "properties": {"event": {"type": "string", "description": "the event's type where the API names it"},
                   "data": {"type": "string", "description": "the event (or chunk) as JSON"}}}}}}}

_MODELS: dict[str, type[BaseModel]] = {m.__name__: m for m in (ErrorBody, OpenAIErrorBody, AnthropicErrorBody)}
_DESCRIPTIONS = {"400": "Bad request", "401": "Missing or wrong API key", "404": "Not found",
                 "413": "Body too large", "422": "Invalid request", "default": "Error"}


def _envelope(path: str) -> str:
    if path.startswith(ANTHROPIC_PREFIXES):
        return "AnthropicErrorBody"
    return "OpenAIErrorBody" if path.startswith(OPENAI_PREFIXES) else "ErrorBody"


def _error_statuses(path: str, operation: dict[str, Any]) -> list[str]:
    """The statuses an operation answers with often enough to name (the rest fall under `default`)."""
    statuses = [s for s in operation.get("responses", {}) if s.startswith(("4", "5"))]
    if "422" in statuses and path.startswith(ANTHROPIC_PREFIXES):
        # Anthropic parity: validation errors are 400 there (errors.wire_status)
        del operation["responses"]["422"]
        statuses[statuses.index("422")] = "400"
    if operation.get("security"):
        statuses.append("401")
    if "{" in path:
        statuses.append("404")
    if "requestBody" in operation:
        statuses.append("413")
    return sorted(set(statuses)) + ["default"]


def _document_errors(schema: dict[str, Any]) -> None:
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            ref = {"$ref": f"#/components/schemas/{_envelope(path)}"}
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(path, operation):
                description = responses.get(status, {}).get("description") or _DESCRIPTIONS.get(status, "Error")
                responses[status] = {"description": description, "content": {"application/json": {"schema": ref}}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for name, model in _MODELS.items():
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[name] = model_schema


def install_openapi(app: FastAPI, protected: ProtectedRoutes) -> None:
    """Replace `app.openapi` with one that documents the key schemes and the error envelopes (built once, then
    cached). Security first: a protected operation's 401 is documented from it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            document_security(schema, protected)
            _document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
