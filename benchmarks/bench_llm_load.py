"""Chat under load: ddx-omni vs `mlx_lm.server` with 1 and N concurrent streams, and on a bfloat16 checkpoint.

Two scenarios, each peer in its own process, runs interleaved (the order rotates each round), medians over rounds
and paired ratios (each round's ratio, then the median: the load other processes put on this shared machine
drifts between rounds and cancels out within one):

- `concurrency`: the float32 `bench` model (Qwen3-0.6B-shaped, random weights), OpenBLAS preloaded for
  mlx_lm.server as ddx-omni's `serve` preloads it for itself. Per round and peer: one stream alone, then N
  streams at once (distinct prompts), greedy, the EOS biased away so each generates exactly --max-tokens tokens.
  Aggregate tokens/s = N × max_tokens / (last stream's end − first request). /health is probed every 50 ms on
  ddx-omni during its N-stream burst.
- `bf16`: the same weights as bfloat16 (as the hub ships checkpoints). ddx-omni through plain `ddx-omni serve`
  (it re-executes itself with OpenBLAS and casts to float32: `[llm].cpu_dtype = auto`) against stock
  mlx_lm.server (no preload). One stream per round.
- `cache`: 5 conversations of 10 turns each run at once on ddx-omni (each turn adds a ~60-token user message and
  the model's answer); per turn of conversation 0: prompt tokens, cached tokens, TTFT. Once with the prompt cache
  (`[llm].prompt_cache_bytes` default) and once without (0), one after the other.

    .venv/bin/python benchmarks/bench_llm_load.py [--scenario concurrency|bf16|cache|both] [--rounds 3]
        [--streams 8] [--max-tokens 32] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from bench_llm import (
    DEFAULT_DIR,
    OPENBLAS,
    Run,
    _ensure_model,
    _http_run,
    _process,
    gateway_argv,
    gateway_ready,
    server_argv,
)
from harness import free_port, percentile, probing_health

PROMPT = "Round {round}, reader {reader}: write a short story about a lighthouse keeper and a message in a bottle."


@dataclass
class Burst:
    wall_s: float
    runs: list[Run]

    def aggregate_tps(self) -> float:
        return sum(r.tokens for r in self.runs) / self.wall_s


@dataclass
class Peer:
    name: str
    url: str
    model: str
    singles: list[Run] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)


def _clean_env(preload: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDX_") and k != "LD_PRELOAD"}
    if preload and Path(OPENBLAS).exists():
        env["LD_PRELOAD"] = OPENBLAS
    return env


def _burst(peer: Peer, eos: int, rnd: int, streams: int, max_tokens: int) -> Burst:
    runners = [_http_run(peer.url, peer.model, eos, max_tokens) for _ in range(streams)]
    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        runs = list(pool.map(lambda i: runners[i]([{"role": "user", "content": PROMPT.format(round=rnd, reader=i)}]),
                             range(streams)))
    return Burst(time.perf_counter() - start, runs)


@contextlib.contextmanager
def _peers(model_dir: Path, logs: Path, preload_server: bool) -> Iterator[list[Peer]]:
    gw_port, srv_port = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_process(gateway_argv(model_dir, gw_port), f"http://127.0.0.1:{gw_port}/health",
                                     gateway_ready, logs / "gateway.log", env=_clean_env(preload=False)))
        stack.enter_context(_process(server_argv(model_dir, srv_port), f"http://127.0.0.1:{srv_port}/health",
                                     lambda r: r.status_code == 200, logs / "mlx_lm_server.log",
                                     env=_clean_env(preload=preload_server)))
        compute = httpx.get(f"http://127.0.0.1:{gw_port}/health", timeout=10).json()["components"]["llm"]["compute"]
        print(f"ddx-omni compute: {compute}", flush=True)
        yield [Peer("ddx-omni", f"http://127.0.0.1:{gw_port}", str(model_dir)),
               Peer("mlx_lm.server" + (" + OpenBLAS" if preload_server else " (stock)"),
                    f"http://127.0.0.1:{srv_port}", str(model_dir))]


def _rounds(peers: list[Peer], rounds: int, step: Callable[[Peer, int], None]) -> None:
    for peer in peers:  # first-call costs (kernel setup, imports) are not what is measured
        _http_run(peer.url, peer.model, 0, 2)([{"role": "user", "content": "warm up"}])
    for rnd in range(rounds):
        for peer in peers[rnd % len(peers):] + peers[:rnd % len(peers)]:
            step(peer, rnd)


def concurrency(model_dir: Path, logs: Path, eos: int, args: argparse.Namespace) -> str:
    with _peers(model_dir, logs, preload_server=True) as peers:
        def step(peer: Peer, rnd: int) -> None:
            peer.singles.append(_http_run(peer.url, peer.model, eos, args.max_tokens)(
                [{"role": "user", "content": PROMPT.format(round=rnd, reader="alone")}]))
            with probing_health(peer.url, peer.health_ms) if peer.name == "ddx-omni" else contextlib.nullcontext():
                peer.bursts.append(_burst(peer, eos, rnd, args.streams, args.max_tokens))
            burst = peer.bursts[-1]
            print(f"round {rnd} {peer.name}: 1 stream {peer.singles[-1].decode_tps:.2f} tok/s; {args.streams} "
                  f"streams {burst.aggregate_tps():.2f} tok/s aggregate, median TTFT "
                  f"{statistics.median(r.ttft_s for r in burst.runs):.2f} s", flush=True)

        _rounds(peers, args.rounds, step)
    return _concurrency_table(peers, args)


def _concurrency_table(peers: list[Peer], args: argparse.Namespace) -> str:
    ours, theirs = peers
    lines = [f"| peer | 1 stream tok/s | 1 stream TTFT s | {args.streams} streams aggregate tok/s | median TTFT s "
             f"| p90 TTFT s |", "|---|---:|---:|---:|---:|---:|"]
    for peer in peers:
        ttfts = [r.ttft_s for b in peer.bursts for r in b.runs]
        lines.append(f"| {peer.name} | {statistics.median(r.decode_tps for r in peer.singles):.2f} | "
                     f"{statistics.median(r.ttft_s for r in peer.singles):.2f} | "
                     f"{statistics.median(b.aggregate_tps() for b in peer.bursts):.2f} | "
                     f"{statistics.median(ttfts):.2f} | {percentile(ttfts, 0.9):.2f} |")
    pairs = list(zip(ours.bursts, theirs.bursts, ours.singles, strict=True))
    agg = statistics.median(a.aggregate_tps() / b.aggregate_tps() for a, b, _ in pairs)
    self_ratio = statistics.median(a.aggregate_tps() / s.decode_tps for a, _, s in pairs)
    ttft = statistics.median(statistics.median(r.ttft_s for r in a.runs) / statistics.median(r.ttft_s for r in b.runs)
                             for a, b, _ in pairs)
    single = statistics.median(a.decode_tps / b.decode_tps for a, b in zip(ours.singles, theirs.singles, strict=True))
    health = ours.health_ms
    lines += ["", f"Paired medians over {args.rounds} rounds: {args.streams}-stream aggregate ddx-omni / mlx_lm.server "
              f"**{agg:.2f}×**; ddx-omni {args.streams}-stream aggregate / its own 1-stream decode "
              f"**{self_ratio:.2f}×**; "
              f"median TTFT ddx-omni / mlx_lm.server **{ttft:.2f}×**; 1 stream decode ddx-omni / mlx_lm.server "
              f"**{single:.2f}×**. ddx-omni /health during its bursts: {len(health)} probes, median "
              f"{statistics.median(health):.1f} ms, p99 {percentile(health, 0.99):.1f} ms, max {max(health):.1f} ms. "
              f"{args.max_tokens} tokens per stream."]
    return "\n".join(lines)


def _bf16_copy(model_dir: Path) -> Path:
    import shutil

    import mlx.core as mx

    out = model_dir.with_name(model_dir.name + "-bf16")
    if (out / "config.json").is_file():
        return out
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("*.safetensors"))
    for file in model_dir.glob("*.safetensors"):
        weights = mx.load(str(file))
        mx.save_safetensors(str(out / file.name), {k: v.astype(mx.bfloat16) for k, v in weights.items()},
                            metadata={"format": "mlx"})
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}, indent=2))
    return out


def bf16(model_dir: Path, logs: Path, eos: int, args: argparse.Namespace) -> str:
    with _peers(_bf16_copy(model_dir), logs, preload_server=False) as peers:
        def step(peer: Peer, rnd: int) -> None:
            peer.singles.append(_http_run(peer.url, peer.model, eos, args.max_tokens)(
                [{"role": "user", "content": PROMPT.format(round=rnd, reader="bf16")}]))
            print(f"round {rnd} {peer.name}: {peer.singles[-1].decode_tps:.2f} tok/s, TTFT "
                  f"{peer.singles[-1].ttft_s:.2f} s", flush=True)

        _rounds(peers, args.rounds, step)
    ours, theirs = peers
    lines = ["| peer (bfloat16 checkpoint) | decode tok/s | TTFT s |", "|---|---:|---:|"]
    lines += [f"| {p.name} | {statistics.median(r.decode_tps for r in p.singles):.2f} | "
              f"{statistics.median(r.ttft_s for r in p.singles):.2f} |" for p in peers]
    pairs = list(zip(ours.singles, theirs.singles, strict=True))
    lines += ["", f"Paired medians over {args.rounds} rounds: decode ddx-omni / stock mlx_lm.server "
              f"**{statistics.median(a.decode_tps / b.decode_tps for a, b in pairs):.2f}×**, TTFT stock mlx_lm.server "
              f"/ ddx-omni **{statistics.median(b.ttft_s / a.ttft_s for a, b in pairs):.2f}×**. "
              f"{args.max_tokens} tokens per run."]
    return "\n".join(lines)


TURN = ("Turn {turn} of conversation {conv}: here is more of the story so far, with the keeper, the bottle, the "
        "storm over the harbour, the gulls, the lamp and the letter that nobody could read. What happens next?")


def _turn(client: httpx.Client, url: str, eos: int, messages: list[dict[str, str]]) -> tuple[float, str, dict]:
    """One streamed chat turn: (TTFT s, the answer, usage)."""
    body = {"messages": messages, "max_tokens": 16, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "logit_bias": {str(eos): -100.0}}
    start, first, pieces, usage = time.perf_counter(), None, [], {}
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                usage = chunk.get("usage") or usage
                content = ((chunk.get("choices") or [{}])[0].get("delta") or {}).get("content")
                if content:
                    first = first or time.perf_counter()
                    pieces.append(content)
    return (first or time.perf_counter()) - start, "".join(pieces), usage


def _conversation(url: str, eos: int, conv: int, turns: int) -> list[tuple[int, int, float]]:
    history: list[dict[str, str]] = []
    seen = []
    with httpx.Client(timeout=600) as client:
        for turn in range(turns):
            history.append({"role": "user", "content": TURN.format(turn=turn, conv=conv)})
            ttft, answer, usage = _turn(client, url, eos, history)
            history.append({"role": "assistant", "content": answer})
            seen.append((usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"], ttft))
            print(f"  conversation {conv} turn {turn + 1}: prompt {seen[-1][0]}, cached {seen[-1][1]}, "
                  f"TTFT {ttft:.2f} s", flush=True)
    return seen


def cache(model_dir: Path, logs: Path, eos: int, args: argparse.Namespace) -> str:
    lines = ["| prompt cache | turn | prompt tokens | cached tokens | TTFT s |", "|---|---:|---:|---:|---:|"]
    for label, size in (("on", None), ("off", "0")):
        port = free_port()
        env = _clean_env(preload=False) | ({"DDX_LLM__PROMPT_CACHE_BYTES": size} if size else {})
        with _process(gateway_argv(model_dir, port), f"http://127.0.0.1:{port}/health", gateway_ready,
                      logs / f"cache_{label}.log", env):
            url = f"http://127.0.0.1:{port}"
            with ThreadPoolExecutor(5) as pool:
                results = list(pool.map(_conversation, [url] * 5, [eos] * 5, range(5), [args.turns] * 5))
        for turn, (prompt, cached, ttft) in enumerate(results[0]):
            if turn in (0, 1, args.turns // 2 - 1, args.turns - 1):
                lines.append(f"| {label} | {turn + 1} | {prompt} | {cached} | {ttft:.2f} |")
            print(f"cache {label} turn {turn + 1}: prompt {prompt}, cached {cached}, TTFT {ttft:.2f} s", flush=True)
    lines += ["", f"Conversation 0 of 5 running at once, {args.turns} turns each, 16 tokens per answer; one run each."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["concurrency", "bf16", "cache", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--turns", type=int, default=10, help="turns per conversation (scenario cache)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    model_dir = _ensure_model(args.model_dir.expanduser())
    eos = json.loads((model_dir / "config.json").read_text())["eos_token_id"]
    logs = Path(tempfile.mkdtemp(prefix="bench_llm_load_"))
    print(f"model {model_dir}; logs in {logs}", flush=True)
    tables = []
    if args.scenario in ("concurrency", "both"):
        tables.append(concurrency(model_dir, logs, eos, args))
    if args.scenario in ("bf16", "both"):
        tables.append(bf16(model_dir, logs, eos, args))
    if args.scenario == "cache":
        tables.append(cache(model_dir, logs, eos, args))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
