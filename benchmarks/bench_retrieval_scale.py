"""Ingestion throughput and search latency of file search at 1k, 10k and 100k chunks (BM25; dense with a model).

Documents are cut from Debian's git-doc manual (the text of every page, repeated with a shuffled numbering so
that the stores differ), chunked `static` 100 tokens / no overlap so that a store of N chunks holds ~N×100
tokens. Each size gets its own vector store; the 40 questions of bench_retrieval.py are then asked in rounds
that interleave the sizes, and p50/p99 are over all rounds.

    .venv/bin/python benchmarks/bench_retrieval_scale.py [--sizes 1000,10000,100000] [--rounds 3]
        [--embedding-model PATH] [--out benchmarks/results/retrieval_scale.md]
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

from bench_retrieval import QUESTIONS  # noqa: E402
from ddx_omni.core.settings import load_settings  # noqa: E402
from ddx_omni.embeddings.service import EmbeddingsService  # noqa: E402
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/usr/share/doc/git/html"))
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embedding-model", default="")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "retrieval_scale.md")
    args = parser.parse_args()
    paragraphs = corpus_text(args.corpus)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "empty.toml").write_text("")
        settings = load_settings(Path(tmp) / "empty.toml", {
            "files.dir": f"{tmp}/files", "files.db_path": f"{tmp}/files.db",
            "embeddings.model": args.embedding_model}, environ={})
        embeddings = EmbeddingsService(settings)
        files = FilesService(settings, embeddings)
        await embeddings.start()
        await files.start()
        stores = {}
        for n, size in enumerate(int(s) for s in args.sizes.split(",")):
            stores[size] = await ingest(files, documents(paragraphs, size, n), f"s{size}")
        latencies: dict[int, list[float]] = {size: [] for size in stores}
        for _ in range(args.rounds):
            for question, _answers in QUESTIONS:
                for size, (store_id, *_rest) in stores.items():  # sizes interleaved, question by question
                    started = time.perf_counter()
                    await files.vector_stores.search([store_id], [question], filters=None, limit=10, ranking=None)
                    latencies[size].append((time.perf_counter() - started) * 1000)
        await files.stop()
    lines = [f"embedding model: {args.embedding_model or 'none (BM25 only)'}; {args.rounds} rounds × "
             f"{len(QUESTIONS)} questions, sizes interleaved", "",
             "| chunks | MB ingested | ingest s | MB/s | chunks/s | search p50 ms | search p99 ms |",
             "|---|---|---|---|---|---|---|"]
    for size, (_, seconds, chunks, nbytes) in stores.items():
        lat = sorted(latencies[size])
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        lines.append(f"| {chunks} | {nbytes / 1e6:.1f} | {seconds:.1f} | {nbytes / 1e6 / seconds:.2f} | "
                     f"{chunks / seconds:.0f} | {p50:.1f} | {p99:.1f} |")
    report = "\n".join(lines)
    print(report)
    args.out.write_text(f"# File search at scale (benchmarks/bench_retrieval_scale.py)\n\n{report}\n")


if __name__ == "__main__":
    asyncio.run(main())
