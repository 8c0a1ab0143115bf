"""parakeet-mlx engine: `transcribe_stream` with a small right context, all MLX work on one dedicated thread.

Streams are fed in fixed chunks; token times are mapped back to stream time from the mel frames each chunk
produced (the library reports them relative to the chunk's features). BPE pieces are grouped into words
(a piece starting with a space starts a word); a word's confidence is the geometric mean of its pieces'.
"""

from __future__ import annotations

import bisect
import importlib.metadata
import json
import logging
import math
import platform
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .base import SAMPLE_RATE, RecognizedWord, base_language

log = logging.getLogger("ddx_omni.stt.parakeet")

# parakeet-tdt-0.6b-v3's languages (its model card); v2 models are English-only but share the code path.
LANGUAGES = frozenset(["bg", "hr", "cs", "da", "nl", "en", "et", "fi", "fr", "de", "el", "hu", "it", "lv", "lt", "mt",
                       "pl", "pt", "ro", "sk", "sl", "es", "sv", "ru", "uk", "multi"])
CHUNK_S = 0.64  # audio per encoder call: 8 encoder frames of 80 ms; also the floor of a final's padding
ON_MAC = platform.system() == "Darwin"


def local_model_dir(model: str) -> Path | None:
    """The directory holding `config.json` + `model.safetensors` for a path or an already-cached hub repo.

    Never touches the network: `auto` must not hang on a hub lookup when offline.
    """
    path = Path(model).expanduser()
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        config = try_to_load_from_cache(model, "config.json")
        weights = try_to_load_from_cache(model, "model.safetensors")
    except ValueError:  # not a valid repo id either (e.g. a missing local path)
        return None
    if isinstance(config, str) and isinstance(weights, str):
        return Path(config).parent
    return None


def load_model(model: str, allow_download: bool):
    import mlx.core as mx
    from parakeet_mlx.utils import from_config

    directory = local_model_dir(model)
    if directory is None:
        if not allow_download:
            raise FileNotFoundError(f"parakeet weights for {model!r} are not on disk")
        from huggingface_hub import snapshot_download
        directory = Path(snapshot_download(model, allow_patterns=["config.json", "model.safetensors"]))
    net = from_config(json.loads((directory / "config.json").read_text()))
    net.load_weights(str(directory / "model.safetensors"))
    # bfloat16 has no BLAS path on a CPU: float32 there, the checkpoint's bfloat16 on Metal.
    dtype = mx.bfloat16 if ON_MAC else mx.float32
    net.set_dtype(dtype)
    mx.eval(net.parameters())
    return net


def group_words(tokens: list[tuple[str, float, float, float]]) -> list[RecognizedWord]:
    """(piece, start, end, confidence) → words: a piece with a leading space starts a new word."""
    groups: list[list[tuple[str, float, float, float]]] = []
    for token in tokens:
        if not groups or token[0].startswith(" "):
            groups.append([])
        groups[-1].append(token)
    words = []
    for group in groups:
        text = "".join(piece for piece, *_ in group).strip()
        if not text:
            continue
        confidence = math.exp(sum(math.log(max(c, 1e-10)) for *_, c in group) / len(group))
        words.append(RecognizedWord(text=text, start=group[0][1], end=max(g[2] for g in group),
                                    confidence=min(max(confidence, 0.0), 1.0)))
    return words


class ParakeetStream:
    def __init__(self, engine: ParakeetEngine) -> None:
        self._engine = engine
        self._chunk = int(CHUNK_S * SAMPLE_RATE)
        self._reset()

    def _reset(self) -> None:
        self._stream = self._engine.new_streamer()
        self._pending = np.zeros(0, np.float32)
        self._fed = 0  # samples given to the model in this segment
        self._mel_total = 0  # mel frames the model has produced in this segment
        self._calls: list[tuple[int, int]] = []  # (first mel frame, first sample) of each chunk
        self._final: list[tuple[str, float, float, float]] = []
        self._draft: list[tuple[str, float, float, float]] = []

    def _mel_to_seconds(self, mel: float) -> float:
        i = max(bisect.bisect_right(self._calls, (int(mel), 1 << 62)) - 1, 0)
        first_mel, first_sample = self._calls[i]
        return (first_sample + (mel - first_mel) * self._engine.hop) / SAMPLE_RATE

    def _tokens(self, tokens: list, first_encoder_frame: float) -> list[tuple[str, float, float, float]]:
        ratio = self._engine.time_ratio
        out = []
        for token in tokens:
            start_mel = (first_encoder_frame + token.start / ratio) * self._engine.subsampling
            end_mel = (first_encoder_frame + token.end / ratio) * self._engine.subsampling
            out.append((token.text, self._mel_to_seconds(start_mel), self._mel_to_seconds(end_mel),
                        float(token.confidence)))
        return out

    def _run(self, chunk: np.ndarray) -> None:
        import mlx.core as mx

        s, sub = self._stream, self._engine.subsampling
        kept = 0 if s.mel_buffer is None else int(s.mel_buffer.shape[1])
        known_final = len(s.finalized_tokens)
        self._calls.append((self._mel_total, self._fed))
        s.add_audio(mx.array(chunk))
        # a chunk of n samples (a multiple of the hop) yields n/hop + 1 mel frames (centred STFT)
        first_mel = self._mel_total - kept
        used = (kept + len(chunk) // self._engine.hop + 1) // sub * sub
        self._mel_total += len(chunk) // self._engine.hop + 1
        self._fed += len(chunk)
        first_frame = first_mel / sub
        finalized_length = max(0, used // sub - s.drop_size)
        self._final += self._tokens(s.finalized_tokens[known_final:], first_frame)
        self._draft = self._tokens(s.draft_tokens, first_frame + finalized_length)

    def accept(self, samples: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        while len(self._pending) >= self._chunk:
            chunk, self._pending = self._pending[:self._chunk], self._pending[self._chunk:]
            self._run(chunk)

    def partial(self) -> list[RecognizedWord]:
        return group_words(self._final + self._draft)

    def finish(self) -> list[RecognizedWord]:
        if len(self._pending):
            # the encoder needs whole subsampling windows: pad the tail with silence to a full chunk
            tail = np.zeros(self._chunk, np.float32)
            tail[:len(self._pending)] = self._pending
            self._run(tail)
        end = self._fed / SAMPLE_RATE
        words = [w for w in group_words(self._final + self._draft) if w.start < end]
        self._reset()
        return words

    def close(self) -> None:
        self._final, self._draft = [], []


class ParakeetEngine:
    name = "parakeet"
    arch = "parakeet-tdt"

    def __init__(self, model: str, net: object, context: tuple[int, int]) -> None:
        self.model = model
        self.version = importlib.metadata.version("parakeet-mlx")
        self._net = net
        self._context = context
        pre, enc = net.preprocessor_config, net.encoder_config  # type: ignore[attr-defined]
        self.hop = pre.hop_length
        self.subsampling = enc.subsampling_factor
        self.time_ratio = net.time_ratio  # type: ignore[attr-defined]
        # MLX streams and caches are not thread-safe: every MLX call of every session runs on this thread.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-mlx")
        if ON_MAC:  # the local-attention kernel is Metal-only; set once, since streams share the model
            net.encoder.set_attention_model("rel_pos_local_attn", context)  # type: ignore[attr-defined]

    def new_streamer(self):
        # keep_original_attention=True: never switch the shared model's attention per stream (see __init__).
        return self._net.transcribe_stream(context_size=self._context, depth=1,  # type: ignore[attr-defined]
                                           keep_original_attention=True)

    def supports_language(self, language: str) -> bool:
        return base_language(language) in LANGUAGES

    def open_stream(self) -> ParakeetStream:
        return ParakeetStream(self)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
