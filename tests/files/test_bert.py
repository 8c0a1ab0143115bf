"""The BERT encoder (embeddings/bert.py) against an independent numpy forward pass of the same checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ddx_omni.embeddings.engine import MlxEmbedder
from tests.conftest import load_script

_erf = np.frompyfunc(math.erf, 1, 1)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def reference(model_dir: Path, ids: list[int]) -> np.ndarray:
    """Hugging Face BertModel's arithmetic written out in numpy, one unpadded input, mean-pooled, unit length."""
    from safetensors.numpy import load_file

    w = load_file(str(model_dir / "model.safetensors"))
    c = json.loads((model_dir / "config.json").read_text())
    heads, hidden = c["num_attention_heads"], c["hidden_size"]
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:len(ids)]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])

    def dense(name: str, t: np.ndarray) -> np.ndarray:
        return t @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    for n in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        q, k, v = (dense(f"{p}attention.self.{s}", x).reshape(len(ids), heads, -1).transpose(1, 0, 2)
                   for s in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hidden // heads)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(len(ids), hidden)
        x = _layer_norm(dense(f"{p}attention.output.dense", context) + x, w[f"{p}attention.output.LayerNorm.weight"],
                        w[f"{p}attention.output.LayerNorm.bias"])
        inner = dense(f"{p}intermediate.dense", x)
        inner = 0.5 * inner * (1 + _erf(inner / math.sqrt(2)).astype(np.float64))
        x = _layer_norm(dense(f"{p}output.dense", inner) + x, w[f"{p}output.LayerNorm.weight"],
                        w[f"{p}output.LayerNorm.bias"])
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(load_script("make_embedding_model").build_bert_model(tmp_path_factory.mktemp("bert")))


async def test_bert_matches_the_numpy_reference_batched_and_padded(bert_dir: Path) -> None:
    engine = await MlxEmbedder.load("tiny-bert", str(bert_dir))
    try:
        assert engine.pooling == "mean" and engine.dims == 32  # from 1_Pooling/config.json and config.json
        texts = ["The quick brown fox jumps over the lazy dog.", "hello", "What is the weather like in Berlin?"]
        ids = [engine.encode(t) for t in texts]
        assert all(i[0] == ids[0][0] and i[-1] == ids[0][-1] for i in ids)  # [CLS] … [SEP]
        vectors = await engine.embed_ids(ids)  # one padded batch of three lengths
        for n, row in enumerate(ids):
            assert np.allclose(vectors[n], reference(bert_dir, row), atol=2e-4)
        long = engine.encode("word " * 500)
        assert len(long) == 128 and long[-1] == ids[0][-1]  # cut at the position limit, [SEP] kept
    finally:
        engine.close()
