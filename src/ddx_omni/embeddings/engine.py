"""An MLX text-embedding model, pooled and L2-normalised: decoders through mlx-lm, BERT encoders (bert.py).

Decoder embedding models (Qwen3-Embedding and kin) are causal LMs whose last hidden state is the embedding, so
mlx-lm loads them as it loads chat models, and its backbone (`model.model`) gives the hidden states without
the LM head. Sentence encoders (all-MiniLM, bge, e5: `model_type: bert`) run on bert.py's encoder with their
own pooling (mean or CLS, from sentence-transformers' 1_Pooling config). Inputs are right-padded in
length-sorted batches: with causal attention a token never sees the padding after it, and the encoder masks it,
so each input's vector is what an unpadded pass gives. Everything runs on one worker thread (MLX work never on
the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bert import is_bert, load_bert

Span = tuple[int, int]


@dataclass
class Loaded:
    """What a checkpoint gives the engine: a forward pass to hidden states, its tokenizer and its shape."""

    forward: Callable[[Any, Any], Any]  # (ids (B, L) int32, lengths (B,)) → hidden states (B, L, H)
    tokenizer: Any  # a Hugging Face fast tokenizer
    dims: int
    vocab_size: int
    max_tokens: int | None  # position limit of an encoder; longer inputs keep their start and final token
    pooling: str  # the family's own pooling, used for [embeddings].pooling = "auto"


def _local(path: str) -> Path:
    local = Path(path).expanduser()
    if path.startswith(("/", ".", "~")) and not (local / "config.json").is_file():
        raise FileNotFoundError(f"no embedding model directory at {local} (it needs config.json, *.safetensors and "
                                "tokenizer files; scripts/make_embedding_model.py builds one)")
    if local.exists():
        return local
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path))


def _load(path: str) -> Loaded:
    local = _local(path)
    if is_bert(local):
        encoder, tokenizer, pooling = load_bert(local)
        config = encoder.config
        return Loaded(encoder, tokenizer, config["hidden_size"], config["vocab_size"],
                      config["max_position_embeddings"], pooling)
    from mlx_lm import load

    model, wrapper = load(str(local))[:2]
    backbone = model.model  # decoders: the transformer without its LM head, hidden states after the final norm
    return Loaded(lambda ids, _lengths: backbone(ids), getattr(wrapper, "_tokenizer", wrapper),
                  int(model.args.hidden_size), int(model.args.vocab_size), None, "last")


class MlxEmbedder:
    """Loaded model + tokenizer. `embed_ids` and `spans` are thread-safe to call from the async side."""

    def __init__(self, model_id: str, loaded: Loaded, executor: ThreadPoolExecutor, pooling: str,
                 batch_tokens: int) -> None:
        self.model_id = model_id
        self._hidden = loaded.forward
        # the `tokenizers` backend: no length warnings for whole documents (chunking counts them), less overhead
        self._fast = getattr(loaded.tokenizer, "backend_tokenizer", loaded.tokenizer)
        self._executor = executor
        self.pooling = loaded.pooling if pooling == "auto" else pooling
        self.batch_tokens = batch_tokens
        self.dims = loaded.dims
        self.vocab_size = loaded.vocab_size
        self.max_tokens = loaded.max_tokens
        self.name = f"{model_id} tokenizer"

    @classmethod
    async def load(cls, model_id: str, path: str, pooling: str = "auto", batch_tokens: int = 16384) -> MlxEmbedder:
        executor = ThreadPoolExecutor(1, thread_name_prefix="mlx-embed")
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(executor, _load, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(model_id, loaded, executor, pooling, batch_tokens)

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    # ---- tokens ---------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids with the tokenizer's own special tokens (Qwen3-Embedding's appends <|endoftext|>, BERT's
        wraps in [CLS] … [SEP]); past an encoder's position limit the start and the final token are kept."""
        ids = list(self._fast.encode(text, add_special_tokens=True).ids)
        if self.max_tokens is not None and len(ids) > self.max_tokens:
            ids = ids[:self.max_tokens - 1] + ids[-1:]
        return ids

    def spans(self, text: str) -> list[Span]:
        """Character spans of the tokens (chunking counts the model's own tokens)."""
        encoded = self._fast.encode(text, add_special_tokens=False)
        return [(int(a), int(b)) for a, b in encoded.offsets if b > a]

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
        lens = mx.array(lengths)
        hidden = self._hidden(mx.array(padded), lens).astype(mx.float32)  # (B, L, H)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "mean":
            mask = (mx.arange(width)[None, :] < lens[:, None]).astype(mx.float32)
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / lens[:, None].astype(mx.float32)
        else:
            pooled = hidden[mx.arange(len(batch)), lens - 1]
        pooled = pooled / mx.maximum(mx.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        mx.eval(pooled)
        return np.array(pooled, dtype=np.float32)
