"""Shared API-key check for HTTP routes (a FastAPI dependency) and WebSockets (before accept)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.websockets import WebSocket

from .errors import Unauthorized

log = logging.getLogger("ddx_omni.auth")

# Declared so that the OpenAPI document names the schemes; the check itself reads every carrier.
_header_scheme = APIKeyHeader(name="X-API-Key", scheme_name="APIKeyHeader", auto_error=False)
_query_scheme = APIKeyQuery(name="api_key", scheme_name="APIKeyQuery", auto_error=False)
_bearer_scheme = HTTPBearer(scheme_name="HTTPBearer", auto_error=False)

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


async def require_api_key(
    request: Request,
    _h: str | None = Security(_header_scheme),
    _q: str | None = Security(_query_scheme),
    _b: HTTPAuthorizationCredentials | None = Security(_bearer_scheme),
) -> None:
    """Dependency for protected HTTP routes: 401 in the error envelope on a missing or wrong key."""
    keys = _configured_keys(request.app.state)
    if not keys:
        return
    candidates = presented_keys(request.headers, request.query_params)
    if not candidates:
        raise Unauthorized("Missing API key", "send X-API-Key, Authorization: Bearer <key>, or ?api_key=")
    if not any(key_matches(c, keys) for c in candidates):
        raise Unauthorized("Invalid API key")


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
