"""Speech-to-text benchmark: real-time factor, final latency, and concurrent real-time streams, per engine.

    .venv/bin/python benchmarks/bench_stt.py --engines sphinx,parakeet --parakeet-model /tmp/pk_06b

The audio is the committed espeak-ng fixtures joined by 1 s pauses (three utterances, ~14 s).
- RTF: processing time ÷ audio time for one stream fed as fast as possible (in process, no network).
- Latency, through a live server with the audio paced at real time in 64 ms frames:
  end of speech → its speech_final Results (includes the endpointing pause, 300 ms by default), and
  CloseStream sent right after the last word → the final Results.
- Concurrency: the most sessions, all paced at real time, that end without a backlog: every final after
  CloseStream arrives within 1 s.
Runs are interleaved across engines; figures are medians. A parakeet model with random weights
(scripts/make_parakeet_model.py --size 0.6b) has the real model's compute cost, not its words.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ddx_omni.core.settings import load_settings  # noqa: E402

AUDIO = REPO / "tests" / "fixtures" / "audio"
RATE, FRAME = 16000, 2048  # 64 ms of linear16
FRAME_S = FRAME / 2 / RATE
PROBES = (1, 2, 4, 6, 8, 12, 16)


def load_pcm(name: str) -> np.ndarray:
    with wave.open(str(AUDIO / f"{name}.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def speech_end(pcm: np.ndarray) -> int:
    """Last sample above -40 dBFS (measurement only: the fixtures are clean synthetic speech)."""
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > 328)[0]
    return int(loud[-1]) + 1


def build_stream() -> tuple[bytes, list[float], bytes]:
    """(audio with pauses, end-of-speech times in seconds, the same audio cut right after the last word)."""
    parts, ends, offset = [], [], 0
    for name in ("doctor", "garden", "pizza"):
        pcm = load_pcm(name)
        ends.append((offset + speech_end(pcm)) / RATE)
        parts += [pcm, np.zeros(RATE, np.int16)]
        offset += len(pcm) + RATE
    audio = np.concatenate(parts[:-1])
    cut = int(ends[-1] * RATE) // (FRAME // 2) * (FRAME // 2) + FRAME // 2
    return audio.tobytes(), ends, audio[:cut].tobytes()


def engine_overrides(engine: str, parakeet_model: str | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {"stt.engine": engine, "stt.idle_timeout_s": 60, "stt.max_sessions": 64}
    if engine == "parakeet":
        overrides["stt.parakeet_model"] = parakeet_model
    return overrides


def rtf(engine: Any, settings: Any, audio: bytes) -> float:
    from ddx_omni.stt.schemas import ListenOptions
    from ddx_omni.stt.transcriber import Transcriber

    def run() -> float:
        transcriber = Transcriber(engine, ListenOptions(), settings.stt, "bench")
        start = time.perf_counter()
        for i in range(0, len(audio), FRAME):
            transcriber.feed(audio[i:i + FRAME])
        transcriber.close()
        return time.perf_counter() - start

    elapsed = engine.executor.submit(run).result()  # on the engine's own thread, as in the server
    return elapsed / (len(audio) / 2 / RATE)


@contextlib.contextmanager
def server(overrides: dict[str, Any], tmp: Path) -> Iterator[str]:
    """`ddx-omni serve` in its own process, so that the clients here do not share its GIL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDX_")}
    env.update({f"DDX_{k.split('.')[0].upper()}__{k.split('.')[1].upper()}": str(v) for k, v in overrides.items()})
    env["DDX_RESPONSES__DB_PATH"] = str(tmp / "r.db")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ddx-omni"), "serve", "--config",
                             str(tmp / "none.toml"), "--port", str(port), "--log-level", "warning"], env=env, cwd=tmp)
    try:
        while True:  # the engine loads after the server starts
            try:
                state = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()["components"]["stt"]["state"]
                if state != "loading":
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("the server exited")
            time.sleep(0.5)
        yield f"ws://127.0.0.1:{port}/v1/listen"
    finally:
        proc.terminate()
        proc.wait(30)


async def paced_session(url: str, audio: bytes, ends: list[float]) -> dict[str, Any]:
    """Real-time paced stream; latencies of speech_final Results and of the final after CloseStream."""
    speech_finals: list[float] = []
    close_latency = float("nan")
    async with websockets.connect(url, max_size=2**24) as ws:
        start = time.perf_counter()
        closed_at: list[float] = []

        async def consume() -> None:
            nonlocal close_latency
            async for message in ws:
                frame = json.loads(message)
                if frame["type"] != "Results" or not frame["is_final"]:
                    continue
                now = time.perf_counter()
                if closed_at and frame["speech_final"] and not frame["from_finalize"]:
                    close_latency = now - closed_at[0]
                elif frame["speech_final"] and frame["channel"]["alternatives"][0]["words"]:
                    speech_finals.append(now)

        consumer = asyncio.create_task(consume())
        for i in range(0, len(audio), FRAME):
            await asyncio.sleep(max(0.0, start + (i // FRAME) * FRAME_S - time.perf_counter()))
            await ws.send(audio[i:i + FRAME])
        await asyncio.sleep(max(0.0, start + len(audio) / 2 / RATE - time.perf_counter()))
        closed_at.append(time.perf_counter())
        await ws.send(json.dumps({"type": "CloseStream"}))
        await asyncio.wait_for(consumer, 300)
    # the i-th speech_final answers the i-th utterance whose end has been sent
    sent_end = [start + e for e in ends]
    lat = [t - e for t, e in zip(speech_finals, sent_end, strict=False)]  # a missing final shortens it
    return {"speech_final": lat, "close": close_latency}


async def concurrent(url: str, audio: bytes, ends: list[float], n: int) -> tuple[bool, float]:
    """Held at real time: no session has a backlog at the end (its final within 1 s of CloseStream)."""
    results = await asyncio.gather(*(paced_session(url, audio, ends) for _ in range(n)))
    worst = max(r["close"] for r in results)
    return worst <= 1.0, worst


def med(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="sphinx")
    parser.add_argument("--parakeet-model", default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-streams", type=int, default=16)
    parser.add_argument("--skip-concurrency", action="store_true")
    args = parser.parse_args()
    engines = args.engines.split(",")
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-stt-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "none.toml").write_text("")  # an empty config file: the benchmark ignores ./config.toml
    audio, ends, cut = build_stream()
    # the cut stream: the last speech_final comes from CloseStream, not from a pause
    figures: dict[str, dict[str, list[float]]] = {e: {"rtf": [], "eos": [], "close": []} for e in engines}

    loaded: dict[str, Any] = {}
    for engine in engines:
        from ddx_omni.stt.engines import load_engine
        settings = load_settings(tmp / "none.toml", engine_overrides(engine, args.parakeet_model), environ={})
        t0 = time.perf_counter()
        loaded[engine] = (load_engine(settings.stt), settings)
        print(f"{engine}: loaded in {time.perf_counter() - t0:.1f} s", flush=True)

    for run in range(args.runs):
        for engine in engines:  # interleaved
            value = rtf(*loaded[engine], audio)
            figures[engine]["rtf"].append(value)
            print(f"run {run} {engine}: RTF {value:.3f}", flush=True)
    concurrency: dict[str, str] = {}
    for engine in engines:
        loaded[engine][0].close()
        with server(engine_overrides(engine, args.parakeet_model), tmp) as url:
            for run in range(args.runs):
                paced = asyncio.run(paced_session(url, cut, ends))
                figures[engine]["eos"] += paced["speech_final"]
                figures[engine]["close"].append(paced["close"])
                print(f"run {run} {engine}: speech_final {paced['speech_final']} close {paced['close']:.3f}",
                      flush=True)
            if args.skip_concurrency or med(figures[engine]["rtf"]) > 1.0:
                concurrency[engine] = "0 (RTF > 1)" if med(figures[engine]["rtf"]) > 1.0 else "not measured"
                continue
            held = 0
            for n in (p for p in PROBES if p <= args.max_streams):
                ok, worst = asyncio.run(concurrent(url, audio, ends, n))
                print(f"{engine}: {n} concurrent streams {'held' if ok else 'fell behind'} "
                      f"(slowest final after CloseStream {worst:.3f} s)", flush=True)
                if not ok:
                    break
                held = n
            concurrency[engine] = str(held)

    print()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}; audio {len(audio) / 2 / RATE:.1f} s; runs {args.runs}")
    print()
    print("| engine | RTF (1 stream) | end of speech → speech_final | CloseStream → final | real-time streams |")
    print("|---|---|---|---|---|")
    for engine in engines:
        f = figures[engine]
        print(f"| {engine} | {med(f['rtf']):.3f} | {med(f['eos']) * 1000:.0f} ms | {med(f['close']) * 1000:.0f} ms "
              f"| {concurrency[engine]} |")


if __name__ == "__main__":
    main()
