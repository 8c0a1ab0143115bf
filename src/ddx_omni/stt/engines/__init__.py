"""Engine selection: `[stt].engine` = parakeet | sphinx | auto (parakeet when its weights are on disk, else sphinx)."""

from __future__ import annotations

import logging

from ...core.settings import SttSettings
from .base import AsrEngine, AsrStream, RecognizedWord

__all__ = ["AsrEngine", "AsrStream", "RecognizedWord", "load_engine"]

log = logging.getLogger("ddx_omni.stt")


def _parakeet(settings: SttSettings, allow_download: bool) -> AsrEngine:
    from .parakeet import ParakeetEngine, load_model

    net = load_model(settings.parakeet_model, allow_download=allow_download)
    return ParakeetEngine(settings.parakeet_model, net,
                          (settings.parakeet_left_context, settings.parakeet_right_context))


def _sphinx(settings: SttSettings) -> AsrEngine:
    from .sphinx import SphinxEngine

    return SphinxEngine(workers=settings.max_sessions, processes=settings.sphinx_processes)


def load_engine(settings: SttSettings) -> AsrEngine:
    """Blocking (loads weights): call from a worker thread."""
    if settings.engine == "sphinx":
        return _sphinx(settings)
    if settings.engine == "parakeet":
        return _parakeet(settings, allow_download=True)
    from .parakeet import local_model_dir

    if local_model_dir(settings.parakeet_model) is not None:
        try:
            engine = _parakeet(settings, allow_download=False)
            log.info("stt engine auto → parakeet (%s found on disk)", settings.parakeet_model)
            return engine
        except Exception:
            log.exception("stt engine auto: loading parakeet %s failed; falling back to sphinx",
                          settings.parakeet_model)
    else:
        log.info("stt engine auto → sphinx (parakeet weights for %s are not on disk)", settings.parakeet_model)
    return _sphinx(settings)
