"""Chat benchmark: gateway HTTP streaming vs raw `mlx_lm.stream_generate` vs `mlx_lm.server`, same model and prompt.

Single stream, greedy, the EOS token biased away so that every peer generates exactly --max-tokens tokens.
Runs are interleaved (the order rotates each round) and each figure is the median over the rounds. Prompts differ
per round (same for every peer within a round) so that no peer answers from a prompt cache. Every peer runs in
its own process: raw mlx-lm in benchmarks/llm_raw_worker.py (timed inside it, chat template included), the gateway
(`ddx-omni serve --real`) and `mlx_lm.server` behind one keep-alive HTTP connection each.

    .venv/bin/python benchmarks/bench_llm.py [--rounds 5] [--max-tokens 64] [--model-dir DIR]

Builds the `bench` model (Qwen3-0.6B-shaped, float32, random weights) with scripts/make_model.py when DIR has
none. On Linux it re-executes itself with Debian's OpenBLAS preloaded when that is installed (REFERENCE §1: the
BLAS bundled with mlx[cpu] is ~25× slower for float32 matmuls); every peer inherits the same environment.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness import free_port, percentile, probing_health

REPO = Path(__file__).resolve().parents[1]
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
DEFAULT_DIR = Path.home() / ".cache" / "ddx-omni" / "bench-model"
PROMPT = "Round {round}: write a short story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class Run:
    ttft_s: float
    decode_tps: float
    tokens: int
    text: str
    total_s: float  # request to last token: immune to a peer that holds its first tokens back and then bursts


@dataclass
class Peer:
    name: str
    run: Callable[[list[dict[str, str]]], Run]
    runs: list[Run] = field(default_factory=list)


def gateway_argv(model_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "ddx_omni.cli", "serve", "--real", "--model", str(model_dir), "--port", str(port),
            "--log-level", "warning"]


def gateway_ready(health: httpx.Response) -> bool:
    return health.json()["components"]["llm"]["state"] == "ready"


def server_argv(model_dir: Path, port: int) -> list[str]:
    """Stock `mlx_lm.server`, greedy like the other peers."""
    return [sys.executable, "-m", "mlx_lm", "server", "--model", str(model_dir), "--port", str(port), "--temp", "0",
            "--log-level", "WARNING"]


def _preload_openblas() -> None:
    if sys.platform == "linux" and Path(OPENBLAS).exists() and OPENBLAS not in os.environ.get("LD_PRELOAD", ""):
        env = {**os.environ, "LD_PRELOAD": f"{OPENBLAS} {os.environ.get('LD_PRELOAD', '')}".strip()}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _ensure_model(model_dir: Path) -> Path:
    if (model_dir / "config.json").is_file():
        return model_dir
    print(f"building the bench model in {model_dir} …", flush=True)
    spec = importlib.util.spec_from_file_location("make_model", REPO / "scripts" / "make_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model(model_dir, preset="bench", seed=0)


@contextlib.contextmanager
def _process(argv: list[str], ready_url: str, ready: Callable[[httpx.Response], bool], log: Path,
             env: dict[str, str] | None = None) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir(), env=env)
        try:
            deadline = time.monotonic() + 600
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv[:4]} exited with {proc.returncode}; see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if ready(httpx.get(ready_url, timeout=5)):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[:4]} not ready in time; see {log}")
                time.sleep(0.5)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _http_run(url: str, model: str, eos: int, max_tokens: int) -> Callable[[list[dict[str, str]]], Run]:
    client = httpx.Client(timeout=600)  # one keep-alive connection, as a real client holds: no connect per run

    def run(messages: list[dict[str, str]]) -> Run:
        body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                "logit_bias": {str(eos): -100.0}}
        first = last = None
        pieces: list[str] = []
        start = time.perf_counter()
        with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                choices = chunk.get("choices") or [{}]
                content = (choices[0].get("delta") or {}).get("content")
                if content:
                    first = first or time.perf_counter()
                    pieces.append(content)
                if choices[0].get("finish_reason"):
                    last = time.perf_counter()
        assert first is not None and last is not None, "no content streamed"
        return Run(first - start, (max_tokens - 1) / (last - first), max_tokens, "".join(pieces), last - start)

    return run


@contextlib.contextmanager
def _raw_peer(model_dir: Path, eos: int, max_tokens: int, log: Path) -> Iterator[Callable[[list[dict[str, str]]], Run]]:
    """Raw `mlx_lm.stream_generate` in its own process (benchmarks/llm_raw_worker.py), like the servers."""
    worker = [sys.executable, str(Path(__file__).with_name("llm_raw_worker.py")), str(model_dir)]
    with log.open("wb") as err:
        proc = subprocess.Popen(worker, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if not json.loads(proc.stdout.readline() or "{}").get("ready"):
            raise RuntimeError(f"the raw mlx-lm worker did not start; see {log}")

        def run(messages: list[dict[str, str]]) -> Run:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({"messages": messages, "max_tokens": max_tokens, "eos": eos}) + "\n")
            proc.stdin.flush()
            return Run(**json.loads(proc.stdout.readline()))

        yield run
    finally:
        proc.kill()
        proc.wait(30)


def _health_during_generation(url: str, run: Callable[[list[dict[str, str]]], Run]) -> list[float]:
    """/health latencies (ms), probed every 50 ms while the gateway streams one more generation."""
    latencies: list[float] = []
    with probing_health(url, latencies):
        run([{"role": "user", "content": "One more story, while /health is probed."}])
    return latencies


def _table(peers: list[Peer], max_tokens: int, rounds: int) -> str:
    """Medians per peer, and the medians of each round's ratio to raw mlx-lm (paired, so that the load other
    processes put on the machine, which drifts between rounds, cancels out)."""
    raw = next(p for p in peers if p.name.startswith("raw"))
    lines = ["| peer | decode tok/s | TTFT ms | total s | decode vs raw (paired) | TTFT − raw ms (paired) "
             "| total vs raw (paired) | runs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for peer in peers:
        tps = statistics.median(r.decode_tps for r in peer.runs)
        ttft = statistics.median(r.ttft_s for r in peer.runs) * 1000
        ratio = statistics.median(r.decode_tps / b.decode_tps for r, b in zip(peer.runs, raw.runs, strict=True))
        delta = statistics.median((r.ttft_s - b.ttft_s) * 1000 for r, b in zip(peer.runs, raw.runs, strict=True))
        total = statistics.median(r.total_s for r in peer.runs)
        total_ratio = statistics.median(r.total_s / b.total_s for r, b in zip(peer.runs, raw.runs, strict=True))
        lines.append(f"| {peer.name} | {tps:.2f} | {ttft:.0f} | {total:.2f} | {ratio:.1%} | {delta:+.0f} | "
                     f"{total_ratio:.1%} | {len(peer.runs)} |")
    same = all(p.runs[i].text == raw.runs[i].text for p in peers for i in range(rounds))
    lines.append("")
    lines.append(f"{max_tokens} tokens per run, {rounds} interleaved rounds, medians; identical greedy text across "
                 f"peers: {'yes' if same else 'NO'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--no-server", action="store_true", help="leave mlx_lm.server out")
    args = parser.parse_args()
    _preload_openblas()
    model_dir = _ensure_model(args.model_dir.expanduser())
    eos = json.loads((model_dir / "config.json").read_text())["eos_token_id"]
    logs = Path(tempfile.mkdtemp(prefix="bench_llm_"))
    gw_port, srv_port = free_port(), free_port()
    env_note = "OpenBLAS preloaded" if OPENBLAS in os.environ.get("LD_PRELOAD", "") else "bundled BLAS"
    print(f"model {model_dir} ({env_note}); logs in {logs}", flush=True)

    with contextlib.ExitStack() as stack:
        stack.enter_context(_process(gateway_argv(model_dir, gw_port), f"http://127.0.0.1:{gw_port}/health",
                                     gateway_ready, logs / "gateway.log"))
        raw = stack.enter_context(_raw_peer(model_dir, eos, args.max_tokens, logs / "raw.log"))
        peers = [Peer("raw mlx_lm.stream_generate", raw),
                 Peer("ddx-omni gateway (HTTP SSE)", _http_run(f"http://127.0.0.1:{gw_port}", str(model_dir), eos,
                                                               args.max_tokens))]
        if not args.no_server:
            stack.enter_context(_process(server_argv(model_dir, srv_port), f"http://127.0.0.1:{srv_port}/health",
                                         lambda r: r.status_code == 200, logs / "mlx_lm_server.log"))
            peers.append(Peer("mlx_lm.server (HTTP SSE)", _http_run(f"http://127.0.0.1:{srv_port}", str(model_dir),
                                                                    eos, args.max_tokens)))
        warm = [{"role": "user", "content": "warm up"}]
        for peer in peers:  # first-call costs (kernel setup, imports) are not what is measured
            peer.run(warm)
        for rnd in range(args.rounds):
            messages = [{"role": "user", "content": PROMPT.format(round=rnd)}]
            for peer in peers[rnd % len(peers):] + peers[:rnd % len(peers)]:
                run = peer.run(messages)
                peer.runs.append(run)
                print(f"round {rnd} {peer.name}: ttft {run.ttft_s * 1000:.0f} ms, {run.decode_tps:.2f} tok/s",
                      flush=True)
        health = _health_during_generation(f"http://127.0.0.1:{gw_port}", peers[1].run)
    print()
    print(_table(peers, args.max_tokens, args.rounds))
    print(f"gateway /health while generating: {len(health)} probes, median {statistics.median(health):.1f} ms, "
          f"p95 {percentile(health, 0.95):.1f} ms, max {max(health):.1f} ms")


if __name__ == "__main__":
    main()
