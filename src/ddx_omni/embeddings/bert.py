"""A BERT encoder in MLX for sentence-embedding checkpoints (all-MiniLM, bge, e5 … in Hugging Face's layout).

mlx-lm has decoders only; these encoders are the other common family of embedding models. The module tree
mirrors `BertModel`'s parameter names, so a checkpoint's `model.safetensors` loads as it is (a `bert.` prefix
is stripped). Attention is bidirectional: padded positions are masked out of every attention row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        batch, length, hidden = x.shape

        def split(t: mx.array) -> mx.array:
            return t.reshape(batch, length, self.heads, hidden // self.heads).transpose(0, 2, 1, 3)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=(hidden // self.heads) ** -0.5, mask=mask)
        return out.transpose(0, 2, 1, 3).reshape(batch, length, hidden)


class _Output(nn.Module):
    """dense → dropout (none at inference) → LayerNorm(x + residual), BERT's sub-layer output."""

    def __init__(self, inner: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(inner, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def __call__(self, x: mx.array, residual: mx.array) -> mx.array:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float) -> None:
        super().__init__()
        setattr(self, "self", _SelfAttention(hidden, heads))  # noqa: B010 - the checkpoint's name is `self`
        self.output = _Output(hidden, hidden, eps)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        return self.output(self["self"](x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, inner)

    def __call__(self, x: mx.array) -> mx.array:
        return nn.gelu(self.dense(x))  # BERT's erf GELU, not the tanh approximation


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, eps: float) -> None:
        super().__init__()
        self.attention = _Attention(hidden, heads, eps)
        self.intermediate = _Intermediate(hidden, inner)
        self.output = _Output(inner, hidden, eps)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        attended = self.attention(x, mask)
        return self.output(self.intermediate(attended), attended)


class _Encoder(nn.Module):
    def __init__(self, count: int, *args: Any) -> None:
        super().__init__()
        self.layer = [_Layer(*args) for _ in range(count)]


class _Embeddings(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(config.get("type_vocab_size", 2), hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.get("layer_norm_eps", 1e-12))

    def __call__(self, ids: mx.array) -> mx.array:
        positions = mx.arange(ids.shape[1])[None, :]
        types = mx.zeros_like(ids)
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(positions)
                              + self.token_type_embeddings(types))


class BertEncoder(nn.Module):
    """`encoder(ids, lengths)` → (B, L, H) final hidden states; positions past each length are padding."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        eps = config.get("layer_norm_eps", 1e-12)
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
                                config["intermediate_size"], eps)

    def __call__(self, ids: mx.array, lengths: mx.array) -> mx.array:
        keep = mx.arange(ids.shape[1])[None, :] < lengths[:, None]  # (B, L)
        mask = mx.where(keep, 0.0, -1e9).astype(mx.float32)[:, None, None, :]  # every query row ignores padding
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, mask.astype(x.dtype))
        return x


def is_bert(path: Path) -> bool:
    config = path / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "bert"


def load_bert(path: Path) -> tuple[BertEncoder, Any, str]:
    """(encoder, Hugging Face fast tokenizer, pooling from sentence-transformers' 1_Pooling config or mean)."""
    from transformers import AutoTokenizer

    config = json.loads((path / "config.json").read_text())
    model = BertEncoder(config)
    loaded: Any = mx.load(str(path / "model.safetensors"))  # a .safetensors file loads as a name → array dict
    weights = {k.removeprefix("bert."): v for k, v in loaded.items() if not k.endswith("position_ids")}
    model.load_weights([(k, v) for k, v in weights.items() if not k.startswith(("pooler.", "cls."))])
    model.eval()
    pooling_file = path / "1_Pooling" / "config.json"
    pooling = "mean"
    if pooling_file.is_file() and json.loads(pooling_file.read_text()).get("pooling_mode_cls_token"):
        pooling = "cls"
    return model, AutoTokenizer.from_pretrained(str(path)), pooling
