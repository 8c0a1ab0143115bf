from fastapi.testclient import TestClient

from ddx_omni.app import create_app


def test_health_answers(make_settings):
    with TestClient(create_app(make_settings())) as client:
        body = client.get("/health").json()
    assert body["components"]["llm"]["state"] == "ready"
