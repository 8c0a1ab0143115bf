"""Settings layering (CLI > env > TOML > defaults), the seed env names, and bad-setting messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ddx_omni.core.settings import SettingsError, load_settings


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path):
    s = load_settings(write_toml(tmp_path, ""), environ={})
    assert (s.server.host, s.server.port) == ("127.0.0.1", 4250)
    assert s.server.cors_origins == ["http://localhost:3100"]
    assert s.server.request_id_header == "X-Request-ID"
    assert s.auth.api_keys == [] and s.llm.use_real_model is False


def test_precedence_cli_over_env_over_toml_over_default(tmp_path):
    toml = write_toml(tmp_path, "[server]\nport = 5000\nhost = '0.0.0.0'\nlog_level = 'debug'\n")
    env = {"DDX_SERVER__PORT": "6000", "DDX_SERVER__HOST": "127.0.0.2"}
    s = load_settings(toml, {"server.port": 7000}, environ=env)
    assert s.server.port == 7000  # CLI
    assert s.server.host == "127.0.0.2"  # env over TOML
    assert s.server.log_level == "debug"  # TOML over default
    assert s.server.max_body_bytes == 10 * 1024 * 1024  # default
    assert load_settings(toml, environ=env).server.port == 6000
    assert load_settings(toml, environ={}).server.port == 5000


def test_seed_environment_names(tmp_path):
    env = {
        "DDX_LLM_API_KEYS": "k1, k2",
        "DDX_LLM_USE_REAL_MODEL": "1",
        "DDX_LLM_CORS_ORIGINS": "http://a.test,http://b.test",
        "DDX_LLM_REQUEST_ID_HEADER": "X-Trace",
        "DDX_STT_AUDIO_MAX_CHANNELS": "4",
        "DDX_STT_AUDIO_MAX_SAMPLE_RATE": "96000",
    }
    s = load_settings(write_toml(tmp_path, ""), environ=env)
    assert s.auth.api_keys == ["k1", "k2"]
    assert s.llm.use_real_model is True
    assert s.server.cors_origins == ["http://a.test", "http://b.test"]
    assert s.server.request_id_header == "X-Trace"
    assert (s.stt.audio_max_channels, s.stt.audio_max_sample_rate) == (4, 96000)


def test_scheme_name_wins_over_seed_alias(tmp_path):
    env = {"DDX_LLM_API_KEYS": "seed", "DDX_AUTH__API_KEYS": "scheme"}
    assert load_settings(write_toml(tmp_path, ""), environ=env).auth.api_keys == ["scheme"]


def test_toml_sections_and_models(tmp_path):
    toml = write_toml(tmp_path, '[auth]\napi_keys = ["a"]\n[[llm.models]]\nid = "local/x"\npath = "/m/x"\n')
    s = load_settings(toml, environ={})
    assert s.auth.api_keys == ["a"]
    assert [m.id for m in s.llm.models] == ["local/x"]


@pytest.mark.parametrize(("toml", "env", "expected"), [
    ("", {"DDX_SERVER__PORT": "abc"}, ["server.port", "'abc'", "DDX_SERVER__PORT", "valid integer"]),
    ("[server]\nport = 'abc'\n", {}, ["server.port", "config file", "[server].port"]),
    ("[server]\nprot = 1\n", {}, ["Unknown setting 'server.prot'", "config file", "port"]),
    ("", {"DDX_STT__ENGINE": "whisper"}, ["stt.engine", "DDX_STT__ENGINE", "auto"]),
    ("[server\nport=1", {}, ["not valid TOML", "config.toml"]),
])
def test_bad_setting_names_setting_source_and_fix(tmp_path, toml, env, expected):
    with pytest.raises(SettingsError) as info:
        load_settings(write_toml(tmp_path, toml), environ=env)
    message = str(info.value)
    for fragment in expected:
        assert fragment in message
    assert "Fix" in message


def test_missing_explicit_config_file(tmp_path):
    with pytest.raises(SettingsError, match="Cannot read the config file"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_serve_with_bad_port_prints_one_message_and_no_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DDX_SERVER__PORT": "abc"}
    proc = subprocess.run([sys.executable, "-m", "ddx_omni.cli", "serve"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "server.port" in proc.stderr and "DDX_SERVER__PORT" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
