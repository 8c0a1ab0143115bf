"""The fastest compute path MLX has on this machine: OpenBLAS for the CPU backend, float32 for 16-bit checkpoints.

The `mlx[cpu]` wheel links the reference BLAS it bundles (~5 GFLOPS for a float32 matmul here, against ~140 with
OpenBLAS: REFERENCE §1). MLX calls `cblas_sgemm` by its plain name, so preloading Debian's OpenBLAS
(`libopenblas0-pthread`) before the process starts makes MLX use it; the loader reads LD_PRELOAD only at exec,
hence `prefer_openblas` re-executes the server once with it set. The BLAS path exists for float32 only: a
bfloat16/float16 checkpoint computes ~2× slower per token than the same weights cast to float32, so on the CPU
`[llm].cpu_dtype = auto` casts them when the float32 copy fits in the memory available.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, cast

log = logging.getLogger("ddx_omni.llm.compute")

# Debian/Ubuntu's libopenblas0-pthread, as an alternative of libblas.so.3 (it exports the cblas_* names MLX calls)
OPENBLAS_CANDIDATES = tuple(f"/usr/lib/{arch}-linux-gnu/openblas-pthread/libblas.so.3"
                            for arch in ("x86_64", "aarch64"))
REEXEC_MARK = "DDX_OMNI_BLAS_REEXEC"  # set in the re-executed process: never re-exec twice
FLOAT32_HEADROOM_BYTES = 512 << 20  # left free after the float32 copy is made, for the KV cache and the rest


def find_openblas() -> str | None:
    return next((path for path in OPENBLAS_CANDIDATES if Path(path).is_file()), None)


def prefer_openblas(setting: str) -> None:
    """On Linux, re-execute this very command with OpenBLAS preloaded when it is installed and not loaded yet.
    Call it first thing in `serve`, before MLX is imported and before any thread starts."""
    if sys.platform != "linux" or setting != "auto" or os.environ.get(REEXEC_MARK):
        return
    library = find_openblas()
    preload = os.environ.get("LD_PRELOAD", "")
    if library is None or library in preload.split():
        return
    env = {**os.environ, "LD_PRELOAD": f"{library} {preload}".strip(), REEXEC_MARK: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def loaded_blas() -> tuple[str, str | None]:
    """Which BLAS serves MLX's cblas_* calls: ("openblas", path) | ("accelerate", None) | ("bundled", path).
    numpy's own OpenBLAS (libscipy_openblas*, symbols renamed) does not count: MLX cannot call it."""
    if sys.platform == "darwin":
        return "accelerate", None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown", None
    paths = sorted({parts[5] for line in maps.splitlines()
                    if len(parts := line.split()) >= 6 and parts[5].startswith("/")})
    names = [(p, Path(p).name) for p in paths]
    openblas = [p for p, name in names if name.startswith("libopenblas")
                or (name.startswith("libblas") and "openblas" in p)]
    if openblas:
        return "openblas", openblas[0]
    bundled = [p for p, name in names if name.startswith("libblas")]
    return "bundled", (bundled[0] if bundled else None)


def process_compute() -> dict[str, Any]:
    """The process-wide part of `/health` `llm.compute`: the MLX device and the BLAS behind it."""
    import mlx.core as mx

    backend = "cpu" if mx.default_device().type == mx.DeviceType.cpu else "gpu"
    blas, path = loaded_blas()
    return {"backend": backend, "blas": blas if backend == "cpu" else "metal", "blas_path": path}


def _available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _float_parameters(model: Any) -> tuple[Counter[str], bool]:
    """Bytes per floating dtype of the model's parameters, and whether it has quantized (packed) weights."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    sizes: Counter[str] = Counter()
    quantized = False
    # a parameter tree flattens to (name, array) pairs; mlx's annotation allows any leaf
    flat = cast("list[tuple[str, Any]]", tree_flatten(model.parameters()))
    for _, value in flat:
        if mx.issubdtype(value.dtype, mx.floating):
            sizes[str(value.dtype).removeprefix("mlx.core.")] += value.nbytes
        elif value.dtype == mx.uint32:
            quantized = True
    return sizes, quantized


def choose_dtype(model: Any, setting: str, on_cpu: bool) -> tuple[str, str, str]:
    """(checkpoint dtype, dtype to compute in, why) for `[llm].cpu_dtype` = auto | float32 | native."""
    sizes, quantized = _float_parameters(model)
    native = sizes.most_common(1)[0][0] if sizes else "float32"
    if not on_cpu:
        return native, native, "on the GPU the checkpoint's own dtype is fastest"
    if setting == "native" or native == "float32":
        return native, native, f"cpu_dtype={setting}" if native != "float32" else "already float32"
    if setting == "float32":
        return native, "float32", "cpu_dtype=float32"
    if quantized:
        return native, native, "quantized checkpoint: kept as it is (cpu_dtype=float32 casts its scales)"
    need = sum(sizes.values()) * 4 // 2 + FLOAT32_HEADROOM_BYTES  # 16-bit → 32-bit doubles the float weights
    available = _available_bytes()
    if available is not None and need > available:
        return native, native, f"the float32 copy needs {need >> 20} MiB, only {available >> 20} MiB available"
    return native, "float32", "16-bit weights have no BLAS path on the CPU: cast to float32"


def apply_dtype(model: Any, setting: str) -> dict[str, str]:
    """Cast the model per `choose_dtype` (on its MLX thread); what was chosen, for /health and the log."""
    import mlx.core as mx

    on_cpu = mx.default_device().type == mx.DeviceType.cpu
    native, dtype, why = choose_dtype(model, setting, on_cpu)
    if dtype != native:
        model.set_dtype(getattr(mx, dtype))
        mx.eval(model.parameters())
        mx.clear_cache()  # the 16-bit buffers are free now: give them back
    log.info("model computes in %s (checkpoint %s): %s", dtype, native, why)
    return {"dtype": dtype, "checkpoint_dtype": native, "dtype_reason": why}
