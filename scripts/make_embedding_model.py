"""Build a tiny local embedding model with random weights for tests, offline: decoder or BERT encoder.

`--arch qwen3` (default): scripts/make_model.py's tiny qwen3 model (the same trained BPE tokenizer) with the
tokenizer set up as Qwen3-Embedding's is: every encoded text ends with `<|endoftext|>`, whose last hidden state
is the embedding. `--arch bert`: a 2-layer BERT in Hugging Face's layout (config.json, model.safetensors, a
WordPiece tokenizer trained here, sentence-transformers' 1_Pooling config: mean). The vectors carry no meaning;
the plumbing (loading, batching, masking, pooling, dimensions, base64, hybrid fusion) is real.

    python scripts/make_embedding_model.py OUT_DIR [--arch qwen3|bert] [--seed 0]
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


BERT_CONFIG = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 32, "num_hidden_layers": 2,
               "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 128,
               "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 0}


def build_bert_model(out_dir: str | Path, seed: int = 0) -> Path:
    import mlx.core as mx
    import numpy as np
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(_make_model_module().CORPUS * 4, trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[(t, tok.token_to_id(t)) for t in specials[2:4]])
    BertTokenizerFast(tokenizer_object=tok, model_max_length=128).save_pretrained(str(out))
    config = {**BERT_CONFIG, "vocab_size": tok.get_vocab_size()}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True,
                                                               "pooling_mode_cls_token": False}))
    rng = np.random.default_rng(seed)
    weights = {name: mx.array(rng.normal(0, 0.2, shape).astype(np.float32)) for name, shape in _bert_shapes(config)}
    mx.save_safetensors(str(out / "model.safetensors"), weights)
    return out


def _bert_shapes(c: dict) -> list[tuple[str, tuple[int, ...]]]:  # type: ignore[type-arg]
    h, i = c["hidden_size"], c["intermediate_size"]
    shapes = [("embeddings.word_embeddings.weight", (c["vocab_size"], h)),
              ("embeddings.position_embeddings.weight", (c["max_position_embeddings"], h)),
              ("embeddings.token_type_embeddings.weight", (c["type_vocab_size"], h)),
              ("embeddings.LayerNorm.weight", (h,)), ("embeddings.LayerNorm.bias", (h,))]
    for n in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        for name in ("query", "key", "value"):
            shapes += [(f"{p}attention.self.{name}.weight", (h, h)), (f"{p}attention.self.{name}.bias", (h,))]
        shapes += [(f"{p}attention.output.dense.weight", (h, h)), (f"{p}attention.output.dense.bias", (h,)),
                   (f"{p}attention.output.LayerNorm.weight", (h,)), (f"{p}attention.output.LayerNorm.bias", (h,)),
                   (f"{p}intermediate.dense.weight", (i, h)), (f"{p}intermediate.dense.bias", (i,)),
                   (f"{p}output.dense.weight", (h, i)), (f"{p}output.dense.bias", (h,)),
                   (f"{p}output.LayerNorm.weight", (h,)), (f"{p}output.LayerNorm.bias", (h,))]
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--arch", choices=("qwen3", "bert"), default="qwen3")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build = build_bert_model if args.arch == "bert" else build_embedding_model
    print(f"wrote {args.arch} embedding model to {build(args.out_dir, args.seed)}")


if __name__ == "__main__":
    main()
