"""Code interpreter costs: container cold start, warm `print(1)` round trip, and overhead vs a plain subprocess.

Variants, run interleaved (one of each per round, order rotated) so machine noise hits them alike:
- cold: a new container (record + directory), then its first call — bwrap builds the sandbox, Python starts
  (then the container is deleted again); and the same with the kernel as a plain process;
- warm: `print(1)` in a container whose kernel is running (the pipe protocol, output capture, file scan);
- warm, no sandbox: the same kernel as a plain process (what the bubblewrap layer adds to a warm call);
- subprocess: `python -c "print(1)"` in a fresh plain process, the stateless way to run one snippet.
    python benchmarks/bench_sandbox.py [--rounds 30] [--out benchmarks/results/sandbox.md]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from ddx_omni.containers.sandbox import Sandbox
from ddx_omni.containers.service import ContainersService
from ddx_omni.core.settings import load_settings


def service_at(root: Path, sandbox: Sandbox | None = None) -> ContainersService:
    settings = load_settings(Path("/dev/null"), {"code_interpreter.data_dir": str(root),
                                                 "code_interpreter.max_containers": 10000}, environ={})
    return ContainersService(settings, sandbox=sandbox)


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000


async def run(rounds: int, root: Path) -> dict[str, list[float]]:
    boxed, plain = service_at(root / "boxed"), service_at(root / "plain", Sandbox(sandboxed=False))
    for service in (boxed, plain):
        await service.start()
        await service.require_sandbox()
    warm = (await boxed.create("warm"))["id"]
    warm_plain = (await plain.create("warm"))["id"]
    await boxed.execute(warm, "print(1)")
    await plain.execute(warm_plain, "print(1)")

    def cold(service: ContainersService) -> Callable[[], Awaitable[None]]:
        async def once() -> None:
            made = await service.create("cold")
            await service.execute(made["id"], "print(1)")
            await service.delete(made["id"])
        return once

    async def subprocess_once() -> None:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "print(1)",
                                                    stdout=asyncio.subprocess.PIPE)
        await proc.communicate()

    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "cold start + first print(1)": cold(boxed),
        "cold start + first print(1), no sandbox": cold(plain),
        "warm print(1)": lambda: boxed.execute(warm, "print(1)"),
        "warm print(1), no sandbox": lambda: plain.execute(warm_plain, "print(1)"),
        "plain subprocess python -c print(1)": subprocess_once,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(await timed(variants[name]))
    for service in (boxed, plain):
        await service.stop()
    return times


def table(times: dict[str, list[float]]) -> str:
    subprocess_ms = statistics.median(times["plain subprocess python -c print(1)"])
    rows = ["| variant | median ms | p10 ms | p90 ms | vs plain subprocess |", "|---|---|---|---|---|"]
    for name, values in times.items():
        q = statistics.quantiles(values, n=10)
        med = statistics.median(values)
        rows.append(f"| {name} | {med:.2f} | {q[0]:.2f} | {q[-1]:.2f} | {med / subprocess_ms:.2f}× |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times = asyncio.run(run(args.rounds, Path(tmp)))
    report = (f"# Sandbox benchmark\n\n{platform.machine()}, Python {platform.python_version()}, "
              f"{args.rounds} interleaved rounds; command: `python benchmarks/bench_sandbox.py --rounds "
              f"{args.rounds}`\n\n{table(times)}\n")
    print(report)
    if args.out is not None:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
