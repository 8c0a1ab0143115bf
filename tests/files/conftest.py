"""Fixtures of the files tests: a live server (mock chat, real files component), an openai SDK client, a corpus."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import build_settings, live_server, load_script
from tests.responses.support import query

# Three small documents whose answers are known (and distinct words, so BM25 alone tells them apart).
DOCS = {
    "cats.md": "# Cats\n\nCats are small carnivorous mammals. They purr when they are content.\n\n"
               "A group of cats is called a clowder. Kittens open their eyes after about ten days.",
    "dogs.txt": "Dogs were domesticated from wolves. A dog barks to warn its family.\n\n"
                "Puppies are young dogs. The Border Collie is often named the most intelligent breed.",
    "fish.html": "<html><head><title>Fish</title><script>var tracking = 1;</script></head><body><nav>Home | About"
                 "</nav><h1>Fish</h1><p>Fish breathe through gills and swim with fins.</p>"
                 "<p>The whale shark is the largest living fish.</p></body></html>",
}
ATTRIBUTES = {"cats.md": {"kind": "feline", "legs": 4, "pet": True},
              "dogs.txt": {"kind": "canine", "legs": 4, "pet": True},
              "fish.html": {"kind": "fish", "legs": 0, "pet": False}}


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=60, max_retries=0)


@pytest.fixture
def storage_url(each_store: str) -> str:
    """Every files test with a server runs on both stores: SQLite (the default) and a fresh PostgreSQL database."""
    return each_store


@pytest.fixture
def files_server(tmp_path: Path, storage_url: str) -> Iterator[Callable[..., str]]:
    """files_server(overrides=None, script=None) → URL of a live server on the test's store (all servers of a
    test share it, as replicas would); `script`: mock-script rules."""
    import contextlib

    with contextlib.ExitStack() as stack:
        def start(overrides: dict[str, Any] | None = None, script: list[dict[str, Any]] | None = None) -> str:
            extra = dict(overrides or {})
            if script is not None:
                path = tmp_path / "script.json"
                path.write_text(json.dumps(script))
                extra["llm.mock_script"] = str(path)
            return stack.enter_context(live_server(build_settings(tmp_path, extra, storage_url)))
        yield start


@pytest.fixture
def client(files_server: Callable[..., str]) -> openai.OpenAI:
    return sdk(files_server())


def upload_corpus(client: openai.OpenAI) -> dict[str, str]:
    """filename → file id."""
    return {name: client.files.create(file=(name, text.encode()), purpose="assistants").id
            for name, text in DOCS.items()}


def animal_store(client: openai.OpenAI) -> tuple[str, dict[str, str]]:
    """A vector store holding the corpus (with attributes), ingested; → (store id, filename → file id)."""
    ids = upload_corpus(client)
    store = client.vector_stores.create(name="animals")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, files=[{"file_id": ids[n], "attributes": ATTRIBUTES[n]} for n in DOCS])
    assert batch.status == "completed" and batch.file_counts.completed == len(DOCS)
    return store.id, ids


def build_embedding_model(out_dir: Path) -> Path:
    return Path(load_script("make_embedding_model").build_embedding_model(out_dir))


@pytest.fixture(scope="session")
def embedding_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_embedding_model(tmp_path_factory.mktemp("embedding_model"))


def files_query(storage_url: str, tmp_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A read straight from the files database of a server built by `files_server`."""
    return query(storage_url, tmp_path, sql, params, sqlite_file="files.db")
