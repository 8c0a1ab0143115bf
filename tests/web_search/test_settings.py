"""[web_search] settings: what each provider needs, secrets kept secret, CIDRs checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddx_omni.core.settings import Settings, SettingsError, load_settings
from ddx_omni.web_search.service import create_service


def settings(tmp_path: Path, **environ: str) -> Settings:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    return load_settings(empty, environ=environ)


def test_defaults_offer_no_search(tmp_path: Path) -> None:
    service = create_service(settings(tmp_path))
    assert not service.available and service.health() == {"state": "ready", "provider": "none"}


@pytest.mark.parametrize(("environ", "needs"), [
    ({"DDX_WEB_SEARCH__PROVIDER": "searxng"}, "DDX_WEB_SEARCH__URL"),
    ({"DDX_WEB_SEARCH__PROVIDER": "tavily"}, "DDX_WEB_SEARCH__API_KEY"),
    ({"DDX_WEB_SEARCH__ALLOWED_NETWORKS": "10.0.0.0/8,not-a-network"}, "not-a-network"),
])
def test_what_a_provider_needs_stops_the_start(tmp_path: Path, environ: dict[str, str], needs: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(tmp_path, **environ)
    assert needs in str(caught.value) and "web_search" in str(caught.value)


def test_the_api_key_comes_from_the_environment_and_stays_secret(tmp_path: Path) -> None:
    loaded = settings(tmp_path, DDX_WEB_SEARCH__PROVIDER="brave", DDX_WEB_SEARCH__API_KEY="k-123-secret")
    assert loaded.web_search.api_key is not None and loaded.web_search.api_key.get_secret_value() == "k-123-secret"
    assert "k-123-secret" not in repr(loaded) and "k-123-secret" not in loaded.model_dump_json()
    assert create_service(loaded).health()["provider"] == "brave"
