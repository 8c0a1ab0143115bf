"""Build a local vision-language model (Qwen2-VL architecture, random weights) that mlx-vlm's `load` reads offline.

Beside `make_model.py` (whose tokenizer trainer and tool-calling chat template it reuses): a Qwen2-VL config
scaled down to a 2-layer, 64-wide language model and a 1-block vision tower, mlx-vlm's own model classes to make
the weights, a byte-level BPE tokenizer with the Qwen2-VL vision tokens, and the image processor's configuration
(14-pixel patches merged 2×2, so an image costs (h/28)·(w/28) prompt tokens between `min_pixels` and
`max_pixels`). Random weights write gibberish: good for plumbing and token counts, not for what an image shows.

    python scripts/make_vlm.py OUT_DIR [--seed 0] [--max-pixels 802816]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
PATCH, MERGE, TEMPORAL = 14, 2, 2
MIN_PIXELS = 56 * 56  # the smallest image: 4 prompt tokens
MAX_PIXELS = 28 * 28 * 1024  # the largest: 1024 prompt tokens (Qwen2-VL's own default is 12845056)
# CLIP's normalisation, as Qwen2-VL's preprocessor_config.json has it
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

# A content list renders its text parts and one Qwen2-VL vision block per image part (the processor widens
# each <|image_pad|> to the image's token count); a plain string renders as is.
RENDER_MACRO = """
{%- macro render(content) -%}
{%- if content is string -%}{{ content }}{%- else -%}
{%- for part in content -%}
{%- if part.type == 'text' -%}{{ part.text }}
{%- elif part.type in ('image', 'image_url', 'input_image') -%}<|vision_start|><|image_pad|><|vision_end|>
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
""".strip()


def _make_model_module() -> Any:
    """scripts/make_model.py, loaded by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("ddx_make_model", Path(__file__).with_name("make_model.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chat_template(base: str) -> str:
    """make_model's template with every content rendered through the image-aware macro."""
    body = base.replace("{{ message.content }}", "{{ render(message.content) }}")
    return RENDER_MACRO + "\n" + body.replace("{{ ns.system }}", "{{ render(ns.system) }}")


def model_config(vocab_size: int, ids: dict[str, int], eos_id: int) -> dict[str, Any]:
    """A Qwen2-VL config.json (Hugging Face layout: text fields at the top, `vision_config` nested)."""
    return {
        "model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"],
        "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "vocab_size": vocab_size,
        "max_position_embeddings": 4096, "tie_word_embeddings": False, "torch_dtype": "float32",
        # head_dim 16 → 8 rotary frequencies, split over (time, height, width)
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "eos_token_id": eos_id, "bos_token_id": ids["<|endoftext|>"],
        "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
        "vision_config": {"model_type": "qwen2_vl", "depth": 1, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2,
                          "hidden_size": 64, "in_channels": 3, "patch_size": PATCH, "spatial_patch_size": PATCH,
                          "spatial_merge_size": MERGE, "temporal_patch_size": TEMPORAL},
    }


def processor_configs(max_pixels: int) -> dict[str, dict[str, Any]]:
    """The files mlx-vlm's Qwen2-VL processor reads (all of them, so that it never asks the hub)."""
    image = {"image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
             "patch_size": PATCH, "merge_size": MERGE, "temporal_patch_size": TEMPORAL,
             "min_pixels": MIN_PIXELS, "max_pixels": max_pixels,
             "size": {"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels},
             "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
             "image_mean": IMAGE_MEAN, "image_std": IMAGE_STD}
    return {"preprocessor_config.json": image, "video_preprocessor_config.json": image,
            "processor_config.json": {"processor_class": "Qwen2VLProcessor"}}


def _model_config(module: Any, config: dict[str, Any]) -> Any:
    """The config object as mlx-vlm's loader builds it (text fields copied into text_config, nested classes)."""
    raw = json.loads(json.dumps(config))
    built = module.ModelConfig.from_dict(raw)  # fills raw["text_config"] from the top-level fields
    from mlx_vlm.utils import update_module_configs

    return update_module_configs(built, module, raw, ["text", "vision"])


def build_vlm(out_dir: str | Path, seed: int = 0, max_pixels: int = MAX_PIXELS) -> Path:
    """Write config.json, model.safetensors, tokenizer and processor files into out_dir; return out_dir."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_vlm.models import qwen2_vl

    make_model = _make_model_module()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_model._train_tokenizer(600, None)
    tok.add_special_tokens(VISION_TOKENS)
    eos_id = make_model._save_tokenizer(tok, out, chat_template(make_model.CHAT_TEMPLATE))
    ids = {name: tok.token_to_id(name) for name in [*VISION_TOKENS, "<|endoftext|>"]}
    config = model_config(tok.get_vocab_size(), ids, eos_id)
    mx.random.seed(seed)
    model = qwen2_vl.Model(_model_config(qwen2_vl, config))
    weights = {name: value.astype(mx.float32) for name, value in tree_flatten(model.parameters())}
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    for name, content in processor_configs(max_pixels).items():
        (out / name).write_text(json.dumps(content, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS)
    args = parser.parse_args()
    print(f"wrote a Qwen2-VL-shaped model to {build_vlm(args.out_dir, args.seed, args.max_pixels)}")


if __name__ == "__main__":
    main()
