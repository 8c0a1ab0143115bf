"""Shared API-key check: HTTP operations (by the gateway layer, before routing) and WebSockets (before accept)."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPBearer
from starlette.routing import compile_path
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


def key_problem(headers: Mapping[str, str], query: Mapping[str, str], keys: Sequence[str]) -> Unauthorized | None:
    """Why a protected HTTP request is refused (401 in the error envelope), or None when it may pass."""
    if not keys:
        return None
    candidates = presented_keys(headers, query)
    if not candidates:
        return Unauthorized("Missing API key", "send X-API-Key, Authorization: Bearer <key>, or ?api_key=")
    if not any(key_matches(c, keys) for c in candidates):
        return Unauthorized("Invalid API key")
    return None


class ProtectedRoutes:
    """The HTTP operations that need a key, by method and path, for the gateway layer to check before routing.

    Not a FastAPI dependency: with one on every route FastAPI solved it per request (with the three schemes
    declared as `Security()` parameters, four solves: about a quarter of a mock chat request). The operations are
    the routes' own (method, path template); no public route shares one with a protected route."""

    def __init__(self) -> None:
        self.exact: dict[str, set[str]] = {}  # path → methods, for paths without parameters
        self.templated: list[tuple[re.Pattern[str], set[str]]] = []
        self.operations: set[tuple[str, str]] = set()  # (path template, lowercase method), for the document

    def add(self, router: APIRouter) -> None:
        # iter_route_contexts walks the routers `router` includes too, with their effective paths (FastAPI keeps
        # an included router as one lazy entry of `router.routes`: its routes would go unprotected otherwise)
        for route in iter_route_contexts(router.routes):
            path, methods = route.path, route.methods
            if not isinstance(route.original_route, APIRoute) or not methods or path is None:
                continue
            if "{" in path:
                self.templated.append((compile_path(path)[0], set(methods)))
            else:
                self.exact.setdefault(path, set()).update(methods)
            self.operations.update((path, method.lower()) for method in methods)

    def covers(self, method: str, scope_path: str, root_path: str = "") -> bool:
        # routes match the path below the mount point, as Starlette's routing does
        path = scope_path[len(root_path):] if root_path and scope_path.startswith(root_path) else scope_path
        if method in self.exact.get(path, ()):
            return True
        return any(method in methods and pattern.match(path) for pattern, methods in self.templated)


def include_protected(app: FastAPI, router: APIRouter) -> None:
    """Include `router` with its operations behind the key check (`app.state.protected_routes`, which
    `document_security` names in the OpenAPI document)."""
    app.include_router(router)
    app.state.protected_routes.add(router)


def document_security(document: dict[str, Any], protected: ProtectedRoutes) -> None:
    """Name the key schemes in the OpenAPI document, and on each protected operation, as FastAPI does for
    `Security()` dependencies (core/openapi.py calls it while building the document)."""
    requirement: list[dict[str, list[str]]] = [{scheme.scheme_name: []} for scheme in SCHEMES]
    for path, method in protected.operations:
        operation = document["paths"].get(path, {}).get(method)
        if operation is not None:
            operation["security"] = requirement
    document.setdefault("components", {})["securitySchemes"] = {
        scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True) for scheme in SCHEMES}


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
