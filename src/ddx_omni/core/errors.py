"""Error envelope and the one error-code table: every error body is {code, message, detail?}; OpenAI routes also
carry {error: {…}}, Anthropic routes {type: "error", error: {type, message}}."""

from __future__ import annotations

from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

# Paths whose clients are the OpenAI SDKs: they read `error.message` / `error.code`.
OPENAI_PREFIXES = ("/v1/chat", "/v1/models", "/v1/responses", "/v1/conversations", "/v1/completions",
                   "/v1/containers", "/v1/audio", "/v1/files", "/v1/vector_stores", "/v1/embeddings")
# Paths whose clients are the Anthropic SDKs and Claude Code: they read {type: "error", error: {type, message}}.
ANTHROPIC_PREFIXES = ("/v1/messages", "/anthropic/")


class Code(NamedTuple):
    status: int
    openai_type: str  # `error.type` on OpenAI routes


_BAD, _GONE, _SERVER = "invalid_request_error", "not_found_error", "server_error"

# Every code this server sends, with its one status. Two codes for one kind of failure are deliberate: the seed
# contract (docs/chat.md; its clients switch on status and code) answers request errors on chat, completions,
# models, embeddings and audio with 422, and OpenAI answers the Responses-era APIs (responses, conversations,
# files, vector stores, containers) with 400, which the openai SDK raises as BadRequestError. Anthropic routes
# map statuses once more in `wire_status`.
CODES: dict[str, Code] = {
    # seed contract: 422 for a request this server will not run (the SDK's UnprocessableEntityError)
    "request_invalid": Code(422, _BAD),
    "context_too_long": Code(422, _BAD),
    # OpenAI parity (Responses, Conversations, files, containers): 400 (the SDK's BadRequestError)
    "invalid_request": Code(400, _BAD),
    # OpenAI's own code for an overflowing Responses input; Codex treats exactly this code as fatal (no retry)
    "context_length_exceeded": Code(400, _BAD),
    "response_in_progress": Code(400, _BAD),
    "unsupported_tool": Code(400, _BAD),
    "web_search_unavailable": Code(400, _BAD),
    "sandbox_unavailable": Code(400, _BAD),
    "container_expired": Code(400, _BAD),
    "empty_file": Code(400, _BAD),
    "unsupported_file": Code(400, _BAD),
    # images are 400 on every API: OpenAI's BadRequestError, Anthropic's invalid_request_error
    "invalid_image": Code(400, _BAD),
    "image_too_large": Code(400, _BAD),
    "too_many_images": Code(400, _BAD),
    "model_not_multimodal": Code(400, _BAD),
    "unsupported_file_id": Code(400, _BAD),
    "file_not_found": Code(400, _BAD),
    # Deepgram parity: its pre-recorded API answers bad options and undecodable audio with 400
    "bad_request": Code(400, _BAD),
    "unsupported_source": Code(400, _BAD),
    "unsupported_data": Code(400, _BAD),
    "unauthorized": Code(401, "authentication_error"),
    "not_found": Code(404, _GONE),
    "model_not_found": Code(404, _GONE),
    "method_not_allowed": Code(405, _BAD),
    "payload_too_large": Code(413, _BAD),
    # a relayed container request that reached a replica which no longer owns it (containers/router.py)
    "container_on_another_replica": Code(409, _BAD),
    "too_many_containers": Code(429, "rate_limit_error"),
    "model_unavailable": Code(503, _SERVER),
    "unavailable": Code(503, _SERVER),
    "replica_unreachable": Code(503, _SERVER),
    "llm_error": Code(500, _SERVER),  # generation failed
    "internal_error": Code(500, _SERVER),  # anything else that failed: speech, storage, a bug
    # pass-through: the status is the upstream model server's or the owner replica's own
    "upstream_refused": Code(400, _BAD),
    "replica_error": Code(500, _SERVER),
}
PASS_THROUGH = frozenset({"upstream_refused", "replica_error"})
# The seed contract's 422 codes and their OpenAI-parity twins: a check that chat and Responses share (llm/prompt.py)
# answers a Responses request with the twin.
OPENAI_TWINS = {"request_invalid": "invalid_request", "context_too_long": "context_length_exceeded"}
INTERNAL_ERROR = "internal_error"

_OPENAI_TYPES = {400: _BAD, 401: "authentication_error", 403: "permission_error", 404: _GONE,
                 409: "conflict_error", 413: _BAD, 422: _BAD, 429: "rate_limit_error"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    529: "overloaded_error"}


class ApiError(Exception):
    """An error with a code from CODES (which gives its status). Raise it anywhere below a route; `status` is
    only for the PASS_THROUGH codes, whose status is another server's."""

    code: str = INTERNAL_ERROR

    def __init__(self, message: str, detail: Any = None, *, param: str | None = None,
                 status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.param = param
        if code is not None:
            self.code = code
        known = CODES.get(self.code)
        self.status: int = status if status is not None else known.status if known else 500


def api_error(code: str, message: str, param: str | None = None, detail: Any = None) -> ApiError:
    """The error for `code`, its status from CODES."""
    return ApiError(message, detail, param=param, code=code)


class RequestInvalid(ApiError):
    code = "request_invalid"


class ContextTooLong(ApiError):
    code = "context_too_long"


class ModelNotFound(ApiError):
    code = "model_not_found"


class ModelUnavailable(ApiError):
    code = "model_unavailable"


class LlmError(ApiError):
    code = "llm_error"


class Unauthorized(ApiError):
    code = "unauthorized"


class NotFound(ApiError):
    code = "not_found"


class PayloadTooLarge(ApiError):
    code = "payload_too_large"


def wire_status(path: str, status: int) -> int:
    """The status a route's clients expect: Anthropic's API answers bad requests with 400 (not 422) and a
    model that is not ready with 529 overloaded (which its SDK and Claude Code retry)."""
    if path.startswith(ANTHROPIC_PREFIXES):
        return {422: 400, 503: 529}.get(status, status)
    return status


def anthropic_error_type(status: int) -> str:
    """Anthropic's error `type` for one of this server's statuses."""
    return _ANTHROPIC_TYPES.get({422: 400, 503: 529}.get(status, status), "api_error")


def openai_error_type(code: str, status: int) -> str:
    known = CODES.get(code)
    if known is not None and known.status == status:
        return known.openai_type
    return _OPENAI_TYPES.get(status, _SERVER)


def error_body(path: str, status: int, code: str, message: str, detail: Any = None,
               param: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    if path.startswith(ANTHROPIC_PREFIXES):
        return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}, **body}
    if path.startswith(OPENAI_PREFIXES):
        body["error"] = {"message": message, "type": openai_error_type(code, status), "code": code, "param": param}
    return body


def error_response(path: str, exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(path, exc.status, exc.code, exc.message, exc.detail, exc.param),
                        status_code=wire_status(path, exc.status), headers=headers)


# The code of a status Starlette raises itself (unknown route, wrong method, a framework 4xx/5xx).
_HTTP_CODES = {CODES[code].status: code for code in ("unauthorized", "not_found", "method_not_allowed",
                                                     "payload_too_large", "request_invalid")}


def _http_code(status: int) -> str:
    return _HTTP_CODES.get(status, "request_invalid" if status < 500 else INTERNAL_ERROR)


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
