"""/v1/embeddings and hybrid search on a tiny random-weight MLX embedding model (scripts/make_embedding_model.py).

The model's vectors mean nothing (random weights), so these tests check the plumbing against an independent
computation — mlx-lm's own forward pass of the same weights — not retrieval quality (benchmarks/ does that
with a real corpus).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import wait_for

from .conftest import animal_store, files_query, sdk


def reference_vector(model_dir: Path, text: str) -> np.ndarray:
    """The last token's final hidden state, computed with mlx-lm directly, unbatched."""
    import mlx.core as mx
    from mlx_lm import load

    model, tokenizer = load(str(model_dir))[:2]
    ids = tokenizer._tokenizer(text)["input_ids"]
    hidden = np.array(model.model(mx.array([ids]))[0, -1].astype(mx.float32))
    return hidden / np.linalg.norm(hidden)


@pytest.fixture
def embed_url(files_server: Callable[..., str], embedding_model_dir: Path) -> str:
    url = files_server({"embeddings.model": str(embedding_model_dir)})
    wait_for(lambda: httpx.get(f"{url}/health").json()["components"]["embeddings"]["state"] != "loading", 60)
    return url


def test_float_and_base64_match_the_model_and_each_other(embed_url: str, embedding_model_dir: Path) -> None:
    client = sdk(embed_url)
    model = str(embedding_model_dir)
    texts = ["The weather in Berlin is sunny.", "hi", "Write a short poem about the sea and the stars."]
    floats = client.embeddings.create(model=model, input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1, 2] and floats.usage.prompt_tokens > 0
    raw = httpx.post(f"{embed_url}/v1/embeddings", json={"model": model, "input": texts,
                                                         "encoding_format": "base64"}).json()
    for n, text in enumerate(texts):
        vector = np.array(floats.data[n].embedding, dtype=np.float32)
        decoded = np.frombuffer(base64.b64decode(raw["data"][n]["embedding"]), dtype="<f4")
        assert np.allclose(vector, decoded, atol=1e-6)
        assert np.allclose(vector, reference_vector(embedding_model_dir, text), atol=1e-4)  # batched = unbatched
        assert abs(np.linalg.norm(vector) - 1) < 1e-4


def test_dimensions_token_ids_and_errors(embed_url: str, embedding_model_dir: Path) -> None:
    client = sdk(embed_url)
    model = str(embedding_model_dir)
    full = np.array(client.embeddings.create(model=model, input="sea").data[0].embedding)
    short = np.array(client.embeddings.create(model=model, input="sea", dimensions=16).data[0].embedding)
    assert short.shape == (16,) and np.allclose(short, full[:16] / np.linalg.norm(full[:16]), atol=1e-5)
    ids = client.embeddings.create(model=model, input=[[10, 20, 30], [40]])
    assert len(ids.data) == 2 and ids.usage.prompt_tokens == 4
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model=model, input="sea", dimensions=4096)
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model=model, input=[[10**9]])
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.embeddings.create(model=model, input="")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="sea")


def test_without_a_model_embeddings_are_503_and_health_says_bm25(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.embeddings.create(model="anything", input="sea")
    assert info.value.status_code == 503
    health = httpx.get(str(client.base_url).replace("/v1/", "/health")).json()
    assert health["status"] in ("ok", "degraded")
    assert health["components"]["embeddings"]["retrieval"] == "bm25"
    assert health["components"]["files"]["retrieval"] == "bm25"


def test_hybrid_search_stores_vectors_and_fuses_scores(embed_url: str, tmp_path: Path, storage_url: str) -> None:
    client = sdk(embed_url)
    assert httpx.get(f"{embed_url}/health").json()["components"]["files"]["retrieval"] == "hybrid"
    store_id, ids = animal_store(client)
    blobs = files_query(storage_url, tmp_path, "SELECT embedding FROM chunks WHERE vector_store_id = ?", (store_id,))
    assert blobs and all(b is not None and len(b) == 64 * 4 for (b,) in blobs)  # the tiny model's 64 dims
    lexical_only = list(client.vector_stores.search(store_id, query="clowder", ranking_options={
        "hybrid_search": {"embedding_weight": 0.0, "text_weight": 1.0}}))  # type: ignore[typeddict-unknown-key]
    dense_only = list(client.vector_stores.search(store_id, query="clowder", ranking_options={
        "hybrid_search": {"embedding_weight": 1.0, "text_weight": 0.0}}))  # type: ignore[typeddict-unknown-key]
    fused = list(client.vector_stores.search(store_id, query="clowder"))
    assert lexical_only[0].file_id == ids["cats.md"] and len(lexical_only) == 1
    assert len(dense_only) == 3  # every chunk has a cosine to the query; random weights rank them somehow
    by_file = {r.file_id: r.score for r in dense_only}
    top = fused[0]
    assert top.file_id == ids["cats.md"]
    assert top.score == pytest.approx((lexical_only[0].score + by_file[top.file_id]) / 2, abs=1e-5)
