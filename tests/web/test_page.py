"""The welcome page over HTTP: public, self-contained (every asset from this server), served with a strict CSP."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

ASSET_REF = re.compile(r'(?:src|href)="([^"#]+)"')


def test_page_is_public_even_with_auth_on(server_factory: Callable[..., str]) -> None:
    url = server_factory({"auth.api_keys": ["secret"]})
    page = httpx.get(f"{url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<meta name="viewport"' in page.text  # laid out for phones
    for element_id in ("model-select", "chat-form", "resp-form", "stt-file", "mic-btn", "api-key", "st-stt"):
        assert f'id="{element_id}"' in page.text
    assert httpx.get(f"{url}/v1/chat/completions", timeout=10).status_code in (401, 405)  # the API stays protected


def test_every_asset_comes_from_this_server(server_factory: Callable[..., str]) -> None:
    url = server_factory()
    page = httpx.get(f"{url}/", timeout=10).text
    local = [ref for ref in ASSET_REF.findall(page) if ref.startswith("static/")]
    assert {"static/welcome.css", "static/welcome.js"} <= set(local)
    bodies = [page]
    for ref in local + ["static/pcm-worklet.js"]:
        asset = httpx.get(f"{url}/{ref}", timeout=10)
        assert asset.status_code == 200, ref
        assert asset.headers["content-type"].startswith("text/css" if ref.endswith(".css") else "text/javascript")
        bodies.append(asset.text)
    for body in bodies:  # no CDN, no external font or script: the page works offline
        assert not re.search(r"(?:src|href|url\()\s*=?\s*[\"']?https?://", body)
        assert "//cdn" not in body and "@import" not in body


def test_unknown_static_file_is_a_404_envelope(server_factory: Callable[..., str]) -> None:
    url = server_factory()
    response = httpx.get(f"{url}/static/../../etc/passwd", timeout=10)
    assert response.status_code == 404
    response = httpx.get(f"{url}/static/missing.js", timeout=10)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found" and "missing.js" in response.json()["message"]
