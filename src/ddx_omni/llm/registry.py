"""Model registry: the configured `[[llm.models]]` entries, completed from a local model's config.json and weights."""

from __future__ import annotations

import json
import logging
import math
import struct
from pathlib import Path
from typing import Any

from ..core.settings import LlmSettings, ModelEntry

log = logging.getLogger("ddx_omni.llm.registry")


def _safetensors_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(size))


def count_parameters(model_dir: Path, bits: int | None) -> int:
    """Parameters from the safetensors headers (no weights read); packed quantized weights count unpacked."""
    total = 0
    for file in sorted(model_dir.glob("*.safetensors")):
        header = _safetensors_header(file)
        for name, info in header.items():
            if name == "__metadata__" or name.endswith((".scales", ".biases")):
                continue
            numel = math.prod(info["shape"])
            if bits and info["dtype"] == "U32":
                numel = numel * 32 // bits
            total += numel
    return total


def local_metadata(model_dir: Path) -> dict[str, Any]:
    """Registry extras read from a model directory: arch, family, context window, quantization, size."""
    config = json.loads((model_dir / "config.json").read_text())
    quant = config.get("quantization") or config.get("quantization_config") or {}
    bits = quant.get("bits") if isinstance(quant, dict) else None
    arch = config.get("model_type")
    return {
        "arch": arch,
        "family": arch,
        "context_window": config.get("max_position_embeddings") or config.get("max_seq_len"),
        "quantization": f"{bits}bit" if bits else str(config.get("torch_dtype") or "unquantized"),
        "total_params_b": round(count_parameters(model_dir, bits) / 1e9, 6),
        "multimodal": "vision_config" in config,
    }


def complete_entry(entry: ModelEntry) -> ModelEntry:
    """Fill the extras left out of a config entry from its local directory, when it is one."""
    path = Path(entry.path or entry.id).expanduser()
    if not (path / "config.json").is_file():
        return entry
    try:
        found = local_metadata(path)
    except (OSError, ValueError, KeyError, struct.error) as exc:
        log.warning("cannot read model metadata from %s: %s", path, exc)
        return entry
    given = entry.model_dump(exclude_unset=True)
    merged = {**found, **{k: v for k, v in given.items() if v is not None}}
    merged.setdefault("label", path.name)
    merged["path"] = str(path)
    return ModelEntry(**merged)


def build_registry(llm: LlmSettings) -> dict[str, ModelEntry]:
    """id → entry, in config order; the configured default model is always present."""
    entries = [complete_entry(e) for e in llm.models]
    if not any(llm.model in (e.id, e.path) for e in entries):
        entries.insert(0, complete_entry(ModelEntry(id=llm.model)))
    return {e.id: e for e in entries}


def resolve(registry: dict[str, ModelEntry], model_id: str) -> ModelEntry | None:
    """An entry by id, or by its path (clients may name a local model by its directory)."""
    if model_id in registry:
        return registry[model_id]
    return next((e for e in registry.values() if e.path == model_id), None)
