"""Shared API-key check for HTTP routes (one plain FastAPI dependency) and WebSockets (before accept)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPBearer
from starlette.websockets import WebSocket

from .errors import Unauthorized

log = logging.getLogger("ddx_omni.auth")

# What the OpenAPI document names (document_security); the check itself reads every carrier.
SCHEMES = (APIKeyHeader(name="X-API-Key", scheme_name="APIKeyHeader", auto_error=False),
           APIKeyQuery(name="api_key", scheme_name="APIKeyQuery", auto_error=False),
           HTTPBearer(scheme_name="HTTPBearer", auto_error=False))

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def key_matches(candidate: str | None, keys: Sequence[str]) -> bool:
    """Constant-time comparison against every configured key."""
    if not candidate:
        return False
    given = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    return matched


def _authorization_key(headers: Mapping[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "token") and value.strip() else None


def presented_keys(headers: Mapping[str, str], query: Mapping[str, str]) -> list[str]:
    """Every key the client presented, in any accepted carrier."""
    found = [headers.get("x-api-key"), query.get("api_key"), query.get("token"), _authorization_key(headers)]
    return [k for k in found if k]


def websocket_subprotocol_key(websocket: WebSocket) -> str | None:
    """`Sec-WebSocket-Protocol: token, <key>` — what browsers send since they cannot set headers."""
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if len(protocols) >= 2 and protocols[0].lower() == "token":
        return protocols[1]
    return None


def _configured_keys(app_state: object) -> list[str]:
    return app_state.settings.auth.api_keys  # type: ignore[attr-defined]


async def require_api_key(request: Request) -> None:
    """Dependency for protected HTTP routes: 401 in the error envelope on a missing or wrong key.

    One plain dependency: declaring the three schemes as `Security()` parameters made FastAPI solve four
    dependencies per request (~a quarter of a mock chat request); `include_protected` documents them instead."""
    keys = _configured_keys(request.app.state)
    if not keys:
        return
    candidates = presented_keys(request.headers, request.query_params)
    if not candidates:
        raise Unauthorized("Missing API key", "send X-API-Key, Authorization: Bearer <key>, or ?api_key=")
    if not any(key_matches(c, keys) for c in candidates):
        raise Unauthorized("Invalid API key")


def include_protected(app: FastAPI, router: APIRouter) -> None:
    """Include `router` behind the key check, and name the key schemes on its operations in the OpenAPI
    document, as FastAPI does for `Security()` dependencies."""
    app.include_router(router, dependencies=[Depends(require_api_key)])
    operations: set[tuple[str, str]] | None = getattr(app.state, "protected_operations", None)
    if operations is None:
        operations = app.state.protected_operations = set()
        _document_security(app, operations)
    operations.update((route.path, method.lower()) for route in router.routes if isinstance(route, APIRoute)
                      for method in route.methods or ())


def _document_security(app: FastAPI, operations: set[tuple[str, str]]) -> None:
    generate = app.openapi
    requirement: list[dict[str, list[str]]] = [{scheme.scheme_name: []} for scheme in SCHEMES]
    definitions = {scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
                   for scheme in SCHEMES}

    def openapi() -> dict[str, Any]:
        document = generate()  # FastAPI's, cached on the app; the additions below are idempotent
        for path, method in operations:
            operation = document["paths"].get(path, {}).get(method)
            if operation is not None:
                operation["security"] = requirement
        document.setdefault("components", {})["securitySchemes"] = definitions
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document


def authenticate_websocket(websocket: WebSocket) -> tuple[bool, str | None]:
    """(allowed, subprotocol to accept with). Refuse before accept, which the server turns into HTTP 403."""
    subprotocol_key = websocket_subprotocol_key(websocket)
    subprotocol = "token" if subprotocol_key else None
    keys = _configured_keys(websocket.app.state)
    if not keys:
        return True, subprotocol
    candidates = presented_keys(websocket.headers, websocket.query_params)
    if subprotocol_key:
        candidates.append(subprotocol_key)
    return any(key_matches(c, keys) for c in candidates), subprotocol


def warn_if_open(host: str, keys: Sequence[str]) -> None:
    if keys:
        return
    if host in LOOPBACK_HOSTS:
        log.warning("No API keys configured (DDX_LLM_API_KEYS): authentication is bypassed on %s.", host)
    else:
        log.error("No API keys configured and listening on %s, which is not loopback: ANYONE who can reach "
                  "this address can use every route. Set DDX_LLM_API_KEYS or [auth].api_keys.", host)
