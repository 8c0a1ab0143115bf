"""An MLX text-embedding model: a decoder backbone from mlx-lm's model classes, pooled and L2-normalised.

Decoder embedding models (Qwen3-Embedding and kin) are causal LMs whose last hidden state is the embedding, so
mlx-lm loads them as it loads chat models, and its backbone (`model.model`) gives the hidden states without
the LM head. Inputs are right-padded in length-sorted batches: with causal attention a token never sees the
padding after it, so the state at each input's own last token (or the mean over its own tokens) is exactly
what an unpadded pass gives. Everything runs on one worker thread (MLX work never on the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

Span = tuple[int, int]


def _load(path: str) -> tuple[Any, Any]:
    from mlx_lm import load

    local = Path(path).expanduser()
    if path.startswith(("/", ".", "~")) and not (local / "config.json").is_file():
        raise FileNotFoundError(f"no embedding model directory at {local} (it needs config.json, *.safetensors and "
                                "tokenizer files; scripts/make_embedding_model.py builds one)")
    model, tokenizer = load(str(local) if local.exists() else path)[:2]
    return model, tokenizer


class MlxEmbedder:
    """Loaded model + tokenizer. `embed_ids` and `spans` are thread-safe to call from the async side."""

    def __init__(self, model_id: str, model: Any, tokenizer: Any, executor: ThreadPoolExecutor, pooling: str,
                 batch_tokens: int) -> None:
        self.model_id = model_id
        self._backbone = model.model
        self._hf = getattr(tokenizer, "_tokenizer", tokenizer)  # mlx-lm's TokenizerWrapper → the HF tokenizer
        self._executor = executor
        self.pooling = pooling
        self.batch_tokens = batch_tokens
        self.dims = int(model.args.hidden_size)
        self.vocab_size = int(model.args.vocab_size)
        self.name = f"{model_id} tokenizer"

    @classmethod
    async def load(cls, model_id: str, path: str, pooling: str = "last", batch_tokens: int = 16384) -> MlxEmbedder:
        executor = ThreadPoolExecutor(1, thread_name_prefix="mlx-embed")
        try:
            model, tokenizer = await asyncio.get_running_loop().run_in_executor(executor, _load, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(model_id, model, tokenizer, executor, pooling, batch_tokens)

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    # ---- tokens ---------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids with the tokenizer's own special tokens (Qwen3-Embedding's appends <|endoftext|>)."""
        return list(self._hf(text, add_special_tokens=True)["input_ids"])

    def spans(self, text: str) -> list[Span]:
        """Character spans of the tokens (chunking counts the model's own tokens)."""
        encoded = self._hf(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(int(a), int(b)) for a, b in encoded["offset_mapping"] if b > a]

    # ---- vectors --------------------------------------------------------------------------------------------
    async def embed_ids(self, inputs: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(inputs), dims) float32, unit length, in input order."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed_sync, [list(i) for i in inputs])

    def _embed_sync(self, inputs: list[list[int]]) -> np.ndarray:
        out = np.zeros((len(inputs), self.dims), dtype=np.float32)
        for batch in self._batches(inputs):
            out[batch] = self._forward([inputs[i] for i in batch])
        return out

    def _batches(self, inputs: list[list[int]]) -> list[list[int]]:
        """Indices grouped by similar length, each group's padded size within batch_tokens."""
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            longest = len(inputs[i])  # sorted ascending: the newest member is the longest
            if current and (len(current) + 1) * longest > self.batch_tokens:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        import mlx.core as mx

        lengths = [max(1, len(ids)) for ids in batch]
        width = max(lengths)
        padded = np.zeros((len(batch), width), dtype=np.int32)
        for row, ids in enumerate(batch):
            padded[row, :len(ids)] = ids
        hidden = self._backbone(mx.array(padded)).astype(mx.float32)  # (B, L, H), after the final norm
        lens = mx.array(lengths)
        if self.pooling == "mean":
            mask = (mx.arange(width)[None, :] < lens[:, None]).astype(mx.float32)
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / lens[:, None].astype(mx.float32)
        else:
            pooled = hidden[mx.arange(len(batch)), lens - 1]
        pooled = pooled / mx.maximum(mx.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        mx.eval(pooled)
        return np.array(pooled, dtype=np.float32)
