"""Build a tiny local MLX embedding model (Qwen3-Embedding-shaped, random weights) for tests, offline.

It is scripts/make_model.py's tiny qwen3 model (the same trained BPE tokenizer) with the tokenizer set up as
Qwen3-Embedding's is: every encoded text ends with `<|endoftext|>`, whose last hidden state is the embedding
(`[embeddings].pooling = "last"`). The vectors carry no meaning; the plumbing (loading, batching, pooling,
dimensions, base64, hybrid fusion) is real.

    python scripts/make_embedding_model.py OUT_DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _make_model_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("ddx_make_model", HERE / "make_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_embedding_model(out_dir: str | Path, seed: int = 0) -> Path:
    out = _make_model_module().build_model(out_dir, preset="tiny", seed=seed)
    tokenizer_path = out / "tokenizer.json"
    spec = json.loads(tokenizer_path.read_text())
    eos = "<|endoftext|>"
    eos_id = next(t["id"] for t in spec["added_tokens"] if t["content"] == eos)
    spec["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos,
                                                                                                   "type_id": 0}}],
                              "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}},
                                       {"SpecialToken": {"id": eos, "type_id": 0}}],
                              "special_tokens": {eos: {"id": eos, "ids": [eos_id], "tokens": [eos]}}}
    tokenizer_path.write_text(json.dumps(spec))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"wrote embedding model to {build_embedding_model(args.out_dir, args.seed)}")


if __name__ == "__main__":
    main()
