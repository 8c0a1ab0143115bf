"""Shared API-key layer: every carrier accepted and rejected, bypass mode, WebSocket handshakes."""

from __future__ import annotations

import logging

import pytest
from fastapi import APIRouter, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ddx_omni.app import create_app
from ddx_omni.core.auth import ProtectedRoutes, authenticate_websocket, include_protected, key_matches

KEY = "s3cret-key"


def app_with_probe(settings):
    """The real app plus one protected HTTP route and one WebSocket that use the shared layer."""
    app = create_app(settings)
    probe = APIRouter()

    @probe.get("/v1/chat/probe")
    def protected() -> dict:
        return {"ok": True}

    sockets = APIRouter()  # WebSockets authenticate in the handler, before accept

    @sockets.websocket("/ws-probe")
    async def ws_probe(websocket: WebSocket) -> None:
        allowed, subprotocol = authenticate_websocket(websocket)
        if not allowed:
            await websocket.close(code=1008)
            return
        await websocket.accept(subprotocol=subprotocol)
        await websocket.send_json({"subprotocol": subprotocol})
        await websocket.close()

    include_protected(app, probe)
    app.include_router(sockets)
    return app


@pytest.fixture
def client(make_settings):
    with TestClient(app_with_probe(make_settings({"auth.api_keys": [KEY, "other"]}))) as c:
        yield c


@pytest.mark.parametrize("kwargs", [
    {"headers": {"X-API-Key": KEY}},
    {"params": {"api_key": KEY}},
    {"headers": {"Authorization": f"Bearer {KEY}"}},
    {"headers": {"Authorization": f"Token {KEY}"}},
    {"headers": {"Authorization": "Token other"}},
])
def test_each_http_carrier_accepted(client, kwargs):
    response = client.get("/v1/chat/probe", **kwargs)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("kwargs", [
    {},
    {"headers": {"X-API-Key": "wrong"}},
    {"params": {"api_key": "wrong"}},
    {"headers": {"Authorization": "Bearer wrong"}},
    {"headers": {"Authorization": "Token wrong"}},
    {"headers": {"Authorization": f"Basic {KEY}"}},
    {"headers": {"X-API-Key": KEY[:-1]}},
])
def test_each_http_carrier_rejected(client, kwargs):
    response = client.get("/v1/chat/probe", **kwargs)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthorized" and body["message"]
    assert body["error"]["code"] == "unauthorized"  # OpenAI SDKs raise AuthenticationError on it


def test_public_routes_need_no_key(client):
    for path in ("/health", "/healthz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_bypass_when_no_keys_and_warning_logged(make_settings, caplog):
    caplog.set_level(logging.WARNING)
    with TestClient(app_with_probe(make_settings())) as c:
        assert c.get("/v1/chat/probe").status_code == 200
    assert any("authentication is bypassed" in r.message for r in caplog.records)


def test_stronger_warning_off_loopback(make_settings, caplog):
    caplog.set_level(logging.WARNING)
    with TestClient(app_with_probe(make_settings({"server.host": "0.0.0.0"}))):
        pass
    assert any(r.levelno == logging.ERROR and "not loopback" in r.message for r in caplog.records)


@pytest.mark.parametrize(("url", "headers", "subprotocols", "expected_subprotocol"), [
    ("/ws-probe", {"Authorization": f"Token {KEY}"}, None, None),
    ("/ws-probe", {"Authorization": f"Bearer {KEY}"}, None, None),
    (f"/ws-probe?token={KEY}", {}, None, None),
    (f"/ws-probe?api_key={KEY}", {}, None, None),
    ("/ws-probe", {}, ["token", KEY], "token"),
])
def test_websocket_carriers_accepted(client, url, headers, subprotocols, expected_subprotocol):
    with client.websocket_connect(url, headers=headers, subprotocols=subprotocols) as ws:
        assert ws.receive_json() == {"subprotocol": expected_subprotocol}


@pytest.mark.parametrize(("headers", "subprotocols"), [
    ({}, None),
    ({"Authorization": "Token wrong"}, None),
    ({}, ["token", "wrong"]),
])
def test_websocket_refused_before_accept(client, headers, subprotocols):
    with (pytest.raises(WebSocketDisconnect) as info,
          client.websocket_connect("/ws-probe", headers=headers, subprotocols=subprotocols)):
        pass
    assert info.value.code == 1008


def test_key_matches_is_exact():
    assert key_matches("abc", ["x", "abc"])
    assert not key_matches("abcd", ["abc"]) and not key_matches("", ["abc"]) and not key_matches(None, ["abc"])


def test_openapi_declares_security_schemes(client):
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["APIKeyQuery"] == {"type": "apiKey", "in": "query", "name": "api_key"}
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    protected = doc["paths"]["/v1/chat/probe"]["get"]["security"]
    assert {name for entry in protected for name in entry} == {"APIKeyHeader", "APIKeyQuery", "HTTPBearer"}
    assert doc["paths"]["/v1/chat/completions"]["post"]["security"] == protected  # the app's own routers
    assert "security" not in doc["paths"]["/health"]["get"]
    assert "security" not in doc["paths"]["/v1/models"]["get"]


def test_key_checked_per_operation_before_routing(client):
    """The gateway checks keys by (method, path) of the protected operations: templated paths too, and a
    method or path no protected operation has still gets FastAPI's own 405 / 404."""
    assert client.get("/v1/responses/resp_123").status_code == 401  # templated protected route
    assert client.get("/v1/responses/resp_123", headers={"X-API-Key": KEY}).status_code == 404  # then routed
    assert client.get("/v1/chat/completions").status_code == 405  # only POST is protected
    assert client.get("/v1/nothing-here").status_code == 404
    anthropic = client.post("/v1/messages", json={})
    assert anthropic.status_code == 401 and anthropic.json()["error"]["type"] == "authentication_error"
    assert anthropic.headers["x-request-id"]  # the gateway's own answer carries the id too


def test_protected_routes_match_templates_methods_and_mount_point():
    router = APIRouter()

    @router.post("/v1/things")
    def create() -> None: ...

    @router.get("/v1/things/{thing_id}")
    def read(thing_id: str) -> None: ...

    protected = ProtectedRoutes()
    protected.add(router)
    assert protected.covers("POST", "/v1/things") and not protected.covers("GET", "/v1/things")
    assert protected.covers("GET", "/v1/things/t1") and not protected.covers("DELETE", "/v1/things/t1")
    assert not protected.covers("GET", "/v1/things/t1/more") and not protected.covers("GET", "/health")
    assert protected.covers("GET", "/proxy/v1/things/t1", root_path="/proxy")  # below a mount point
    assert protected.operations == {("/v1/things", "post"), ("/v1/things/{thing_id}", "get")}

PUBLIC_V1 = {("/v1/models", "get"), ("/v1/models/{model_id}", "get"), ("/v1/models/current", "get")}


def test_every_v1_operation_needs_a_key(client):
    """Each operation the app serves under /v1 (routers included by routers too: the containers' relayed
    routes are) answers 401 without a key, except the documented public ones."""
    doc = client.get("/openapi.json").json()
    checked = 0
    for path, operations in doc["paths"].items():
        for method in operations:
            if not path.startswith("/v1/") or (path, method) in PUBLIC_V1 or path == "/v1/chat/probe":
                continue
            url = path.replace("{", "x").replace("}", "")  # any id: the key is checked before routing
            response = client.request(method.upper(), url)
            assert response.status_code == 401, (method, path, response.status_code)
            checked += 1
    assert ("/v1/containers/{container_id}", "delete") in {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert checked > 40
