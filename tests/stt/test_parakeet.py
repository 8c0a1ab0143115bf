"""The parakeet streaming path end to end with a tiny random-weights model (frame shapes, not words)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ..conftest import REPO, wait_for
from .conftest import CLOSE, FINALIZE, fixture_pcm, frames_of, run_session, stt_health, ws_url


def _model_script():
    spec = importlib.util.spec_from_file_location("make_parakeet_model", REPO / "scripts" / "make_parakeet_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_parakeet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model_script().write_model(tmp_path_factory.mktemp("parakeet") / "tiny", "tiny")


def start(server_factory, overrides: dict) -> str:
    base = server_factory({"stt.idle_timeout_s": 5, **overrides})
    wait_for(lambda: stt_health(base)["state"] != "loading", timeout=120)
    return base


async def test_parakeet_streams_interim_finalize_and_close(server_factory, tiny_parakeet: Path) -> None:
    base = start(server_factory, {"stt.engine": "parakeet", "stt.parakeet_model": str(tiny_parakeet)})
    health = stt_health(base)
    assert (health["state"], health["engine"], health["model"]) == ("ready", "parakeet", str(tiny_parakeet))

    pcm = fixture_pcm("doctor")
    cut = 2048 * 30
    url = ws_url(base, language="de", interim_results="true", punctuate="true")
    session = await run_session(url, frames_of(pcm[:cut]) + [FINALIZE] + frames_of(pcm[cut:]) + [CLOSE])

    assert session.close_code == 1000
    assert session.frames[0]["type"] == session.frames[-1]["type"] == "Metadata"
    assert session.frames[0]["model_info"][session.frames[0]["models"][0]]["name"] == str(tiny_parakeet)
    results = session.of_type("Results")
    assert any(not r["is_final"] for r in results)
    assert [r["from_finalize"] for r in session.finals].count(True) == 1
    assert session.finals[-1] is results[-1]
    duration = len(pcm) / 32000
    assert session.frames[-1]["duration"] == pytest.approx(duration, abs=1e-3)
    words = session.words
    assert words, "the random model emits tokens; they must come out as words"
    for word in words:
        assert set(word) >= {"word", "start", "end", "confidence", "punctuated_word", "speaker"}
        assert 0.0 <= word["start"] <= word["end"] <= duration
        assert 0.0 <= word["confidence"] <= 1.0
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)


async def test_auto_picks_parakeet_from_disk_and_sphinx_without_weights(server_factory, tiny_parakeet: Path,
                                                                        tmp_path: Path) -> None:
    with_weights = start(server_factory, {"stt.engine": "auto", "stt.parakeet_model": str(tiny_parakeet)})
    assert stt_health(with_weights)["engine"] == "parakeet"
    missing = start(server_factory, {"stt.engine": "auto", "stt.parakeet_model": str(tmp_path / "absent")})
    health = stt_health(missing)
    assert (health["state"], health["engine"]) == ("ready", "sphinx")


async def test_parakeet_refuses_a_language_it_does_not_know(server_factory, tiny_parakeet: Path) -> None:
    base = start(server_factory, {"stt.engine": "parakeet", "stt.parakeet_model": str(tiny_parakeet)})
    session = await run_session(ws_url(base, language="ja"), [0.5])
    assert (session.close_code, session.close_reason) == (1003, "unsupported-language: ja (engine parakeet)")
