"""Error envelope: every error body is {code, message, detail?}; OpenAI routes also carry {error: {…}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

# Paths whose clients are the OpenAI SDKs: they read `error.message` / `error.code`.
OPENAI_PREFIXES = ("/v1/chat", "/v1/models", "/v1/responses", "/v1/conversations", "/v1/completions",
                   "/v1/containers", "/v1/audio")
# Paths whose clients are the Anthropic SDKs and Claude Code: they read {type: "error", error: {type, message}}.
ANTHROPIC_PREFIXES = ("/v1/messages", "/anthropic/")

_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
                 422: "invalid_request_error", 429: "rate_limit_error"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    529: "overloaded_error"}


class ApiError(Exception):
    """An error with a documented status and code. Raise it anywhere below a route."""

    status: int = 500
    code: str = "llm_error"

    def __init__(self, message: str, detail: Any = None, *, param: str | None = None,
                 status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.param = param
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class RequestInvalid(ApiError):
    status, code = 422, "request_invalid"


class ContextTooLong(ApiError):
    status, code = 422, "context_too_long"


class ModelNotFound(ApiError):
    status, code = 404, "model_not_found"


class ModelUnavailable(ApiError):
    status, code = 503, "model_unavailable"


class LlmError(ApiError):
    status, code = 500, "llm_error"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class NotFound(ApiError):
    status, code = 404, "not_found"


def wire_status(path: str, status: int) -> int:
    """The status a route's clients expect: Anthropic's API answers bad requests with 400 (not 422) and a
    model that is not ready with 529 overloaded (which its SDK and Claude Code retry)."""
    if path.startswith(ANTHROPIC_PREFIXES):
        return {422: 400, 503: 529}.get(status, status)
    return status


def anthropic_error_type(status: int) -> str:
    """Anthropic's error `type` for one of this server's statuses."""
    return _ANTHROPIC_TYPES.get({422: 400, 503: 529}.get(status, status), "api_error")


def error_body(path: str, status: int, code: str, message: str, detail: Any = None,
               param: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    if path.startswith(ANTHROPIC_PREFIXES):
        return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}, **body}
    if path.startswith(OPENAI_PREFIXES):
        body["error"] = {"message": message, "type": _OPENAI_TYPES.get(status, "server_error"),
                         "code": code, "param": param}
    return body


def error_response(path: str, exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, exc.status, exc.code, exc.message, exc.detail, exc.param),
                        status_code=wire_status(path, exc.status), headers=headers)


def _http_code(status: int) -> str:
    return {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
            422: "request_invalid"}.get(status, "request_invalid" if status < 500 else "llm_error")


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request.url.path, exc)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    message = f"{'.'.join(loc) or 'request'}: {first.get('msg', 'invalid request')}"
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    return JSONResponse(error_body(request.url.path, 422, "request_invalid", message, detail,
                                   ".".join(loc) or None), status_code=wire_status(request.url.path, 422))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    if exc.status_code == 404 and message == "Not Found":
        message = f"No route {request.method} {request.url.path}"
    return JSONResponse(error_body(request.url.path, exc.status_code, _http_code(exc.status_code), message),
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
