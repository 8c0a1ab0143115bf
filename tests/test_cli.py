"""The CLI surface: exit codes documented in --help, and the commands that need no running server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ddx_omni.cli import app
from ddx_omni.lifecycle import EXIT_CODE_MEANINGS, ExitCode

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.parametrize("command", [[], ["start"], ["stop"], ["restart"], ["status"]])
def test_help_lists_every_exit_code(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Exit codes" in result.output
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert f"{int(code)}  {meaning.split(' ')[0]}" in result.output


def test_lifecycle_commands_are_listed() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=200)
    for name in ("serve", "openapi", "start", "stop", "restart", "status"):
        assert f" {name} " in result.output


def test_status_json_when_nothing_runs(isolated_state: Path) -> None:
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == ExitCode.NOT_RUNNING
    info = json.loads(result.output)
    assert info["running"] is False and info["pid"] is None
    assert info["pid_file"] == str(isolated_state / "ddx-omni" / "server.pid")
    assert info["log_file"] == str(isolated_state / "ddx-omni" / "logs" / "server.log")


def test_unreadable_pid_file_is_stale(isolated_state: Path) -> None:
    pid_file = isolated_state / "ddx-omni" / "server.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text("not a pid\n")
    result = runner.invoke(app, ["stop"])
    assert result.exit_code == ExitCode.NOT_RUNNING
    assert "stale" in result.output and not pid_file.exists()


def test_bad_flag_value_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("")
    result = runner.invoke(app, ["start", "--config", str(tmp_path / "empty.toml"), "--stt-engine", "nope"])
    assert result.exit_code == ExitCode.BAD_CONFIG
    assert "stt.engine" in result.output


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["start", "--config", str(tmp_path / "absent.toml")])
    assert result.exit_code == ExitCode.BAD_CONFIG
    assert "absent.toml" in result.output
