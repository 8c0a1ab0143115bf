"""Error envelopes, request ids, body cap, CORS, health aggregation and metrics on the real app."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel

from ddx_omni.app import create_app
from ddx_omni.core.errors import ModelUnavailable
from ddx_omni.core.health import aggregate
from ddx_omni.core.logging import RequestIdFilter
from ddx_omni.core.request_id import new_request_id


class Body(BaseModel):
    n: int


def app_with_probes(settings, components=None):
    app = create_app(settings, components)
    probe = APIRouter()

    @probe.post("/v1/chat/validate")
    def validate(body: Body) -> dict:
        return {"n": body.n}

    @probe.post("/plain/validate")
    def plain_validate(body: Body) -> dict:
        return {"n": body.n}

    @probe.get("/v1/chat/boom")
    def boom() -> None:
        logging.getLogger("probe").info("about to fail")
        raise RuntimeError("secret internals /etc/passwd")

    @probe.get("/v1/chat/unavailable")
    def unavailable() -> None:
        raise ModelUnavailable("model is not loaded", "load failed: no such file")

    @probe.get("/items/{item_id}")
    def item(item_id: str) -> dict:
        return {"id": item_id}

    app.include_router(probe)
    return app


@pytest.fixture
def client(make_settings):
    with TestClient(app_with_probes(make_settings({"server.max_body_bytes": 1000})),
                    raise_server_exceptions=False) as c:
        yield c


def test_unknown_route_envelope(client):
    r = client.get("/does/not/exist")
    assert r.status_code == 404
    assert r.json() == {"code": "not_found", "message": "No route GET /does/not/exist"}


def test_validation_envelope_plain_and_openai(client):
    plain = client.post("/plain/validate", json={"n": "x"})
    assert plain.status_code == 422
    body = plain.json()
    assert body["code"] == "request_invalid" and "n" in body["message"] and body["detail"]
    assert "error" not in body
    openai_route = client.post("/v1/chat/validate", json={}).json()
    assert openai_route["code"] == "request_invalid"
    assert openai_route["error"] == {"message": openai_route["message"], "type": "invalid_request_error",
                                     "code": "request_invalid", "param": "n"}


def test_api_error_envelope(client):
    r = client.get("/v1/chat/unavailable")
    assert r.status_code == 503
    body = r.json()
    assert (body["code"], body["message"], body["detail"]) == ("model_unavailable", "model is not loaded",
                                                                "load failed: no such file")
    assert body["error"]["type"] == "server_error"


def test_unhandled_exception_is_500_envelope_without_trace_and_logged_with_id(client, caplog):
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())
    r = client.get("/v1/chat/boom", headers={"X-Request-ID": "trace-me-42"})
    assert r.status_code == 500
    assert r.json()["code"] == "internal_error"  # not llm_error: the failure need not be generation's
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"] == "trace-me-42"
    ids = {rec.request_id for rec in caplog.records if rec.name in ("probe", "ddx_omni.errors")}
    assert ids == {"trace-me-42"}
    assert any(rec.exc_info for rec in caplog.records if rec.name == "ddx_omni.errors")


def test_body_over_cap_is_413(client):
    r = client.post("/plain/validate", content=b"{" + b" " * 2000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert r.headers["x-request-id"]


def test_chunked_body_over_cap_is_413(client):
    def chunks():
        for _ in range(5):
            yield b" " * 400

    r = client.post("/plain/validate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_body_under_cap_passes(client):
    assert client.post("/plain/validate", json={"n": 3}).json() == {"n": 3}


@pytest.mark.parametrize(("given", "echoed"), [
    ("abc-123", True),
    ("x" * 128, True),
    ("x" * 129, False),
    ("bad\x01id", False),
    ("", False),
])
def test_request_id_echo_or_new(client, given, echoed):
    r = client.get("/health", headers={"X-Request-ID": given})
    rid = r.headers["x-request-id"]
    if echoed:
        assert rid == given
    else:
        assert rid != given and uuid.UUID(rid).version == 4


def test_new_request_ids_are_uuid4_in_their_usual_form():
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for rid in ids:
        parsed = uuid.UUID(rid)
        assert str(parsed) == rid and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_request_id_header_name_is_configurable(make_settings):
    with TestClient(create_app(make_settings({"server.request_id_header": "X-Trace-Id"}))) as c:
        r = c.get("/health", headers={"X-Trace-Id": "t-1"})
    assert r.headers["x-trace-id"] == "t-1" and "x-request-id" not in r.headers


def test_cors_allows_configured_origin_only(make_settings):
    with TestClient(create_app(make_settings({"server.cors_origins": ["http://app.test"]}))) as c:
        ok = c.options("/v1/chat/completions", headers={"Origin": "http://app.test",
                                                         "Access-Control-Request-Method": "POST"})
        bad = c.options("/v1/chat/completions", headers={"Origin": "http://evil.test",
                                                          "Access-Control-Request-Method": "POST"})
    assert ok.headers["access-control-allow-origin"] == "http://app.test"
    assert "access-control-allow-origin" not in bad.headers


@pytest.mark.parametrize(("states", "status"), [
    (["ready", "ready", "ready"], "ok"),
    (["ready", "loading", "ready"], "loading"),
    (["loading", "failed", "ready"], "loading"),
    (["ready", "idle", "ready"], "degraded"),
    (["ready", "ready", "failed"], "degraded"),
])
def test_health_aggregation(states, status):
    assert aggregate(states) == status


class FakeComponent:
    def __init__(self, name: str, state: str) -> None:
        self.name, self.state = name, state
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    def health(self) -> dict[str, Any]:
        return {"state": self.state}


def test_health_route_reports_components_and_lifespan_runs(make_settings):
    comps = {"llm": FakeComponent("llm", "ready"), "stt": FakeComponent("stt", "loading"),
             "responses": FakeComponent("responses", "ready")}
    with TestClient(create_app(make_settings(), comps)) as c:
        for path in ("/health", "/healthz"):
            body = c.get(path).json()
            assert body["status"] == "loading"
            assert body["components"]["stt"] == {"state": "loading"}
            assert body["version"] and body["uptime_s"] >= 0
        comps["stt"].state = "failed"
        assert c.get("/health").json()["status"] == "degraded"
        assert comps["llm"].events == ["start"]
    assert comps["llm"].events == ["start", "stop"]


def test_metrics_use_route_templates(client):
    client.get("/items/abc-1")
    client.get("/items/abc-2")
    client.get("/nowhere/xyz")
    text = client.get("/metrics").text
    assert 'ddx_http_requests_total{method="GET",route="/items/{item_id}",status="200"}' in text
    assert "abc-1" not in text and "/nowhere/xyz" not in text
    assert 'route="<unmatched>",status="404"' in text
    assert "ddx_http_requests_in_flight" in text and "ddx_http_request_duration_seconds_bucket" in text
    for name in ("ddx_llm_tokens_generated_total", "ddx_llm_time_to_first_token_seconds",
                 "ddx_stt_sessions_active", "ddx_stt_audio_seconds_total", "ddx_responses_stored_total"):
        assert f"# TYPE {name}" in text
