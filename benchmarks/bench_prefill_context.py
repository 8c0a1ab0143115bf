"""Why a prompt-cache hit's TTFT still grows with the conversation: the prefill of the same new tokens after a
longer cached prefix (the model's own forward pass, mlx-lm's KVCache, one sequence) against what the gateway adds
per turn (the prompt cache's lookup, a deep copy of the stored KV cache).

Per prefix length N (interleaved, --rounds rounds, medians): the time to prefill --new tokens after N cached
tokens, and the time of `PromptCache.lookup` for a prompt whose first N tokens are stored.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 \\
      .venv/bin/python benchmarks/bench_prefill_context.py MODEL_DIR [--new 140] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

PREFIXES = (0, 400, 1300, 2600)


def _tokens(count: int, salt: int) -> list[int]:
    return [(i * salt) % 500 + 3 for i in range(count)]


def main() -> None:
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

    from ddx_omni.llm.prompt_cache import PromptCache

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--new", type=int, default=140)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model, _ = load(args.model_dir)
    caches, stores = {}, {}
    for n in PREFIXES:
        cache = make_prompt_cache(model)
        if n:
            model(mx.array([_tokens(n, 7)]), cache=cache)
            mx.eval([c.state for c in cache])
        caches[n] = cache
        stores[n] = PromptCache(model, 1 << 32)
        stores[n].keep(_tokens(n, 7), cache)
    prefill: dict[int, list[float]] = {n: [] for n in PREFIXES}
    lookup: dict[int, list[float]] = {n: [] for n in PREFIXES}
    new = [_tokens(args.new, 11)]
    for _ in range(args.rounds):
        for n in PREFIXES:  # interleaved: the machine's load drifts alike over every prefix
            tic = time.perf_counter()
            found, _reused = stores[n].lookup(_tokens(n, 7) + new[0])
            mx.eval([c.state for c in found])
            lookup[n].append(time.perf_counter() - tic)
            tic = time.perf_counter()
            out = model(mx.array(new), cache=caches[n])
            mx.eval(out, [c.state for c in caches[n]])
            prefill[n].append(time.perf_counter() - tic)
            trim_prompt_cache(caches[n], args.new)
    print(f"| cached prefix (tokens) | prefill of {args.new} new tokens, ms | prompt-cache lookup (copy), ms |")
    print("|---:|---:|---:|")
    for n in PREFIXES:
        print(f"| {n} | {statistics.median(prefill[n]) * 1000:.0f} | {statistics.median(lookup[n]) * 1000:.1f} |")


if __name__ == "__main__":
    main()
