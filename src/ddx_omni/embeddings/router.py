"""POST /v1/embeddings in OpenAI's shape: input string | strings | token ids | lists of token ids."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from ..core.errors import ModelNotFound
from ..responses.schemas import bad_request
from .service import EmbeddingsService

router = APIRouter(prefix="/v1", tags=["embeddings"])

MAX_INPUTS = 2048  # OpenAI's cap on one request's inputs


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def _inputs(value: str | list[str] | list[int] | list[list[int]]) -> list[str] | list[list[int]]:
    if isinstance(value, str):
        value = [value]
    if not value:
        raise bad_request("input: must not be empty", "input")
    if len(value) > MAX_INPUTS:
        raise bad_request(f"input: at most {MAX_INPUTS} inputs per request, got {len(value)}", "input")
    if all(isinstance(v, int) for v in value):
        return [[v for v in value if isinstance(v, int)]]  # one input given as token ids
    if any(isinstance(v, str) and not v for v in value) or any(isinstance(v, list) and not v for v in value):
        raise bad_request("input: an input must not be empty", "input")
    return value  # type: ignore[return-value]


def _encode(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":  # little-endian float32, what the openai SDK decodes with numpy.frombuffer
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(np.float64).round(8).tolist()


@router.post("/embeddings", summary="Create embeddings (the model named by [embeddings].model)")
async def create_embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    service: EmbeddingsService = request.app.state.embeddings
    if service.configured and body.model not in (service.model_id, service.model_id.rstrip("/").split("/")[-1]):
        raise ModelNotFound(f"The embedding model {body.model!r} is not served here; use {service.model_id!r}",
                            param="model")
    engine = await service.require()
    inputs = _inputs(body.input)
    if isinstance(inputs[0], str):
        ids = await asyncio.to_thread(lambda: [engine.encode(t) for t in inputs])  # type: ignore[arg-type]
    else:
        ids = inputs  # type: ignore[assignment]
        if any(not 0 <= t < engine.vocab_size for row in ids for t in row):
            raise bad_request(f"input: token ids must lie in [0, {engine.vocab_size})", "input")
    limit = service.config.max_input_tokens
    if any(len(row) > limit for row in ids):
        raise bad_request(f"input: an input is longer than {limit} tokens ([embeddings].max_input_tokens)", "input")
    dims = body.dimensions
    if dims is not None and not 1 <= dims <= engine.dims:
        raise bad_request(f"dimensions: must be between 1 and {engine.dims} for this model", "dimensions")
    vectors = await engine.embed_ids(ids)
    if dims is not None and dims < engine.dims:  # Matryoshka-style: truncate, then renormalise
        vectors = vectors[:, :dims]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    tokens = sum(len(row) for row in ids)
    return {"object": "list", "model": service.model_id,
            "data": [{"object": "embedding", "index": n, "embedding": _encode(v, body.encoding_format)}
                     for n, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
