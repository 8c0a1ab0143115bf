"""Ingestion throughput and search latency of file search at 1k, 10k and 100k chunks (BM25; dense with a model).

Documents are cut from Debian's git-doc manual (the text of every page, repeated with a shuffled numbering so
that the stores differ), chunked `static` 100 tokens / no overlap so that a store of N chunks holds ~N×100
tokens. Each size gets its own vector store; the 40 questions of bench_retrieval.py are then asked in rounds
that interleave the sizes, and p50/p99 are over all rounds: the whole search (database reads included), and
the BM25 top-k alone (retrieval.lexical on the store's in-process index). "index s" is what building a store's
in-process index from the database takes (read, tokenise, assemble), as a replica that has not seen it does on
its first search (the ingesting process warms its own index in the background when ingestion goes idle).
`--postgres` runs it all on a throwaway PostgreSQL (tests/postgres.py: initdb + pg_ctl) instead of SQLite.

    .venv/bin/python benchmarks/bench_retrieval_scale.py [--sizes 1000,10000,100000] [--rounds 3]
        [--embedding-model PATH] [--postgres] [--out benchmarks/results/retrieval_scale.md]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from bench_retrieval import QUESTIONS  # noqa: E402
from ddx_omni.core.settings import load_settings  # noqa: E402
from ddx_omni.embeddings.service import EmbeddingsService  # noqa: E402
from ddx_omni.files import retrieval as rv  # noqa: E402
from ddx_omni.files.index import Indexes  # noqa: E402
from ddx_omni.files.parsing import parse_html  # noqa: E402
from ddx_omni.files.schemas import CreateBatchRequest, CreateVectorStoreRequest  # noqa: E402
from ddx_omni.files.service import FilesService  # noqa: E402

CHUNK = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
DOC_BYTES = 200_000  # each synthetic document


def corpus_text(corpus: Path) -> list[str]:
    paragraphs = []
    for page in sorted(corpus.glob("*.html")):
        paragraphs += [p for p in parse_html(page.read_bytes()).split("\n\n") if len(p) > 40]
    return paragraphs


def documents(paragraphs: list[str], chunks: int, seed: int) -> list[bytes]:
    """About `chunks` chunks of 100 approximate tokens (≈ 375 bytes of this prose each)."""
    rng = random.Random(seed)
    total, docs = chunks * 375, []
    while total > 0:
        parts, size = [], 0
        while size < min(DOC_BYTES, total):
            p = rng.choice(paragraphs)
            parts.append(p)
            size += len(p) + 2
        docs.append("\n\n".join(parts).encode())
        total -= size
    return docs


async def ingest(files: FilesService, docs: list[bytes], name: str) -> tuple[str, float, int, int]:
    ids = [(await files.create(f"{name}-{n}.txt", d, "assistants"))["id"] for n, d in enumerate(docs)]
    store = await files.vector_stores.create(CreateVectorStoreRequest(name=name))
    started = time.perf_counter()
    batch = await files.vector_stores.create_batch(store["id"], CreateBatchRequest(file_ids=ids,
                                                                                   chunking_strategy=CHUNK))
    while (await files.vector_stores.get_batch(store["id"], batch["id"]))["file_counts"]["in_progress"]:
        await asyncio.sleep(0.1)
    seconds = time.perf_counter() - started
    chunks = (await files.db.read("SELECT COUNT(*) FROM chunks WHERE vector_store_id = ?", (store["id"],)))[0][0]
    return store["id"], seconds, chunks, sum(len(d) for d in docs)


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def measure(files: FilesService, stores: dict[int, tuple[str, float, int, int]], rounds: int
                  ) -> tuple[dict[int, list[float]], dict[int, list[float]], dict[int, float]]:
    """Whole-search and BM25-only latencies (ms) per size, and the first search's seconds (index build)."""
    vs = files.vector_stores
    first: dict[int, float] = {}
    for size, (store_id, *_rest) in stores.items():
        await vs.search([store_id], ["warm"], filters=None, limit=10, ranking=None)  # waits for the warm-up
        cold = Indexes(files.db, lambda: vs.embeddings.dims)  # as a replica that has not seen the store yet
        started = time.perf_counter()
        await cold.get(store_id, 0)
        first[size] = time.perf_counter() - started
    whole: dict[int, list[float]] = {size: [] for size in stores}
    lexical: dict[int, list[float]] = {size: [] for size in stores}
    for _ in range(rounds):
        for question, _answers in QUESTIONS:
            for size, (store_id, *_rest) in stores.items():  # sizes interleaved, question by question
                started = time.perf_counter()
                await vs.search([store_id], [question], filters=None, limit=10, ranking=None)
                whole[size].append((time.perf_counter() - started) * 1000)
                index = vs.indexes.current(store_id)
                assert index is not None
                started = time.perf_counter()
                rv.lexical(index, vs.indexes.tokenize, question, None, rv.candidates(10))
                lexical[size].append((time.perf_counter() - started) * 1000)
    return whole, lexical, first


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/usr/share/doc/git/html"))
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embedding-model", default="")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "retrieval_scale.md")
    args = parser.parse_args()
    paragraphs = corpus_text(args.corpus)
    server = None
    if args.postgres:
        from tests.postgres import PostgresServer

        server = PostgresServer()
        server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "empty.toml").write_text("")
            settings = load_settings(Path(tmp) / "empty.toml", {
                "files.dir": f"{tmp}/files", "files.db_path": f"{tmp}/files.db",
                "storage.url": server.create_database("bench") if server else "",
                "embeddings.model": args.embedding_model}, environ={})
            embeddings = EmbeddingsService(settings)
            files = FilesService(settings, embeddings)
            await embeddings.start()
            await files.start()
            stores = {}
            for n, size in enumerate(int(s) for s in args.sizes.split(",")):
                stores[size] = await ingest(files, documents(paragraphs, size, n), f"s{size}")
            whole, lexical, first = await measure(files, stores, args.rounds)
            await files.stop()
    finally:
        if server is not None:
            server.stop()
    report(args, stores, whole, lexical, first)


def report(args: argparse.Namespace, stores: dict[int, tuple[str, float, int, int]], whole: dict[int, list[float]],
           lexical: dict[int, list[float]], first: dict[int, float]) -> None:
    lines = [f"storage: {'PostgreSQL' if args.postgres else 'SQLite'}; embedding model: "
             f"{args.embedding_model or 'none (BM25 only)'}; {args.rounds} rounds × {len(QUESTIONS)} questions, "
             f"sizes interleaved", "",
             "| chunks | MB ingested | ingest s | MB/s | chunks/s | index s | search p50 ms | search p99 ms "
             "| BM25 top-k p50 ms | BM25 top-k p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for size, (_, seconds, chunks, nbytes) in stores.items():
        p50, p99 = percentiles(whole[size])
        l50, l99 = percentiles(lexical[size])
        lines.append(f"| {chunks} | {nbytes / 1e6:.1f} | {seconds:.1f} | {nbytes / 1e6 / seconds:.2f} | "
                     f"{chunks / seconds:.0f} | {first[size]:.2f} | {p50:.1f} | {p99:.1f} | {l50:.2f} | {l99:.2f} |")
    text = "\n".join(lines)
    print(text)
    args.out.write_text(f"# File search at scale (benchmarks/bench_retrieval_scale.py)\n\n{text}\n")

if __name__ == "__main__":
    asyncio.run(main())
