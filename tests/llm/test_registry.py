"""Registry extras read from a local model directory (config.json + safetensors headers)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ddx_omni.core.settings import ModelEntry
from ddx_omni.llm.registry import build_registry, complete_entry, count_parameters


def test_local_directory_extras_come_from_config_and_weights(tiny_model_dir: Path, make_settings) -> None:
    import mlx.core as mx

    weights = mx.load(str(tiny_model_dir / "model.safetensors"))
    expected = sum(v.size for v in weights.values())
    settings = make_settings({"llm.model": str(tiny_model_dir)})
    entry = build_registry(settings.llm)[str(tiny_model_dir)]
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert entry.arch == "qwen3" and entry.family == "qwen3"
    assert entry.context_window == config["max_position_embeddings"]
    assert entry.quantization == "float32"
    assert entry.total_params_b == round(expected / 1e9, 6)
    assert entry.label == tiny_model_dir.name and entry.path == str(tiny_model_dir)


def test_configured_extras_win_over_the_directory(tiny_model_dir: Path) -> None:
    entry = complete_entry(ModelEntry(id="mine", path=str(tiny_model_dir), label="My model", context_window=128))
    assert (entry.label, entry.context_window, entry.arch) == ("My model", 128, "qwen3")


def test_quantized_weights_count_unpacked(tmp_path: Path) -> None:
    header = {"w.weight": {"dtype": "U32", "shape": [8, 4], "data_offsets": [0, 128]},
              "w.scales": {"dtype": "F16", "shape": [8, 1], "data_offsets": [128, 144]},
              "w.biases": {"dtype": "F16", "shape": [8, 1], "data_offsets": [144, 160]},
              "norm.weight": {"dtype": "F16", "shape": [32], "data_offsets": [160, 224]}}
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(224))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 8192,
                                                      "quantization": {"bits": 4, "group_size": 32}}))
    assert count_parameters(tmp_path, 4) == 8 * 4 * 8 + 32
    entry = complete_entry(ModelEntry(id="q", path=str(tmp_path)))
    assert (entry.quantization, entry.arch, entry.context_window) == ("4bit", "llama", 8192)


def test_hub_entry_without_local_files_keeps_configured_extras(make_settings) -> None:
    registry = build_registry(make_settings().llm)
    entry = registry["mlx-community/Qwen3-4B-Instruct-2507-4bit"]
    assert entry.quantization == "4bit" and entry.context_window == 262144
