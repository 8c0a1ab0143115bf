"""Writes a parakeet-tdt model with random weights (config.json + model.safetensors) for offline tests and benchmarks.

    python scripts/make_parakeet_model.py OUT_DIR --size tiny   # ~1 MB, loads in well under a second
    python scripts/make_parakeet_model.py OUT_DIR --size 0.6b   # parakeet-tdt-0.6b-v3's shapes: the true compute cost

Random weights transcribe nothing meaningful: these models exercise the streaming path, not accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, int]] = {
    # n_layers, d_model, heads, subsampling channels, predictor/joint width, vocabulary size
    "tiny": {"n_layers": 2, "d_model": 64, "n_heads": 2, "sub_channels": 32, "pred": 64, "vocab": 64},
    "0.6b": {"n_layers": 24, "d_model": 1024, "n_heads": 8, "sub_channels": 256, "pred": 640, "vocab": 8192},
}
DURATIONS = [0, 1, 2, 3, 4]


def vocabulary(size: int) -> list[str]:
    """BPE-like pieces: some start a word (▁), some continue one, a few are punctuation."""
    pieces = ["▁the", "▁a", "▁to", "s", "ing", ".", ",", "?"]
    pieces += [f"▁w{i}" if i % 3 else f"p{i}" for i in range(size - len(pieces))]
    return pieces[:size]


def config(size: str) -> dict[str, Any]:
    s = SHAPES[size]
    vocab = vocabulary(s["vocab"])
    return {
        "target": "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel",
        "model_defaults": {"tdt_durations": DURATIONS},
        "preprocessor": {"sample_rate": 16000, "normalize": "per_feature", "window_size": 0.025,
                         "window_stride": 0.01, "window": "hann", "features": 128, "n_fft": 512, "dither": 1e-5},
        "encoder": {"feat_in": 128, "n_layers": s["n_layers"], "d_model": s["d_model"], "n_heads": s["n_heads"],
                    "ff_expansion_factor": 4, "subsampling_factor": 8, "self_attention_model": "rel_pos",
                    "subsampling": "dw_striding", "conv_kernel_size": 9,
                    "subsampling_conv_channels": s["sub_channels"], "pos_emb_max_len": 5000},
        "decoder": {"blank_as_pad": True, "vocab_size": len(vocab),
                    "prednet": {"pred_hidden": s["pred"], "pred_rnn_layers": 2}},
        "joint": {"num_classes": len(vocab), "vocabulary": vocab, "num_extra_outputs": len(DURATIONS),
                  "jointnet": {"joint_hidden": s["pred"], "activation": "relu", "encoder_hidden": s["d_model"],
                               "pred_hidden": s["pred"]}},
        "decoding": {"model_type": "tdt", "durations": DURATIONS, "greedy": {"max_symbols": 10}},
    }


def write_model(out: Path, size: str) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from parakeet_mlx.utils import from_config

    cfg = config(size)
    model = from_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=sorted(SHAPES), default="tiny")
    args = parser.parse_args()
    print(write_model(args.out, args.size))


if __name__ == "__main__":
    main()
