"""Web search costs on this machine: the SSRF-guarded fetch vs plain httpx, trafilatura extraction, a whole search.

Against the stand-in internet of the tests (tests/web_search/internet.py, a local HTTP server), so the figures are
ddx-omni's own work, not the network's. Guarded and plain fetches alternate, `--rounds` rounds of `--requests`
sequential GETs each; the tables give medians per request.
    python benchmarks/bench_web_search.py [--rounds 5] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.web_search import internet as fake

from ddx_omni.core.fetch import Fetcher, FetchLimits
from ddx_omni.core.settings import WebSearchSettings
from ddx_omni.web_search.extract import extract_page
from ddx_omni.web_search.service import PROVIDERS, Scope, WebSearchService


async def per_request(get: object, url: str, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await get(url)  # type: ignore[operator]
    return (time.perf_counter() - started) / n * 1000


async def fetch_rounds(net: fake.Internet, rounds: int, n: int) -> tuple[list[float], list[float]]:
    url = net.url("/pages/mlx.html")
    guarded = Fetcher(FetchLimits(allow_private_networks=True))
    plain = httpx.AsyncClient(trust_env=False)
    g, p = [], []
    for _ in range(rounds):  # interleaved: a slow moment of the machine hits both alike
        g.append(await per_request(guarded.get, url, n))
        p.append(await per_request(plain.get, url, n))
    await guarded.aclose()
    await plain.aclose()
    return g, p


async def extraction(net: fake.Internet, rounds: int) -> dict[str, float]:
    fetcher = Fetcher(FetchLimits(allow_private_networks=True))
    out = {}
    for name in ("mlx", "sqlite-wal", "asyncio"):
        result = await fetcher.get(net.url(f"/pages/{name}.html"))
        times = []
        for _ in range(rounds * 10):
            started = time.perf_counter()
            extract_page(result)
            times.append((time.perf_counter() - started) * 1000)
        out[name] = statistics.median(times)
    await fetcher.aclose()
    return out


async def searches(net: fake.Internet, rounds: int) -> float:
    settings = WebSearchSettings(provider="searxng", url=net.url(""), allow_private_networks=True, cache_ttl_s=0)
    service = WebSearchService(settings, PROVIDERS["searxng"](settings))
    await service.start()
    times = []
    for _ in range(rounds * 5):
        started = time.perf_counter()
        await service.search("mlx unified memory", Scope())
        times.append((time.perf_counter() - started) * 1000)
    await service.stop()
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    net = fake.start()
    try:
        g, p = await fetch_rounds(net, args.rounds, args.requests)
        pages = await extraction(net, args.rounds)
        search_ms = await searches(net, args.rounds)
    finally:
        net.close()
    size = (Path(fake.PAGES) / "mlx.html").stat().st_size
    print(f"| fetch of a {size / 1000:.1f} kB page (keep-alive) | median ms/request |\n|---|---|")
    print(f"| core.fetch (guarded: resolve, check, pinned connect) | {statistics.median(g):.2f} |")
    print(f"| plain httpx.AsyncClient | {statistics.median(p):.2f} |")
    print(f"| paired ratio guarded/plain | {statistics.median(a / b for a, b in zip(g, p, strict=True)):.2f} |\n")
    print("| trafilatura extraction | median ms |\n|---|---|")
    for name, ms in pages.items():
        print(f"| {name}.html | {ms:.2f} |")
    print(f"\nwhole search (provider + 3 pages fetched and extracted, no cache): median {search_ms:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
