"""Two app instances on one database (PostgreSQL: two replicas; SQLite: two processes' worth on one file) and one
files volume: each one's in-process index follows what the other wrote, through the store's version."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest

from .conftest import animal_store, sdk


def top_file(client: openai.OpenAI, store_id: str, query: str) -> str | None:
    results = list(client.vector_stores.search(store_id, query=query))
    return results[0].file_id if results else None


def test_a_store_ingested_on_one_replica_is_searched_on_another(files_server: Callable[..., str]) -> None:
    a, b = sdk(files_server()), sdk(files_server())
    store_id, ids = animal_store(a)  # uploaded and ingested on A only
    assert top_file(b, store_id, "clowder") == ids["cats.md"]  # B builds its index from the database
    assert top_file(a, store_id, "gills") == ids["fish.html"]  # A's index is built too, now

    a.vector_stores.files.delete(file_id=ids["cats.md"], vector_store_id=store_id)
    assert top_file(b, store_id, "clowder") is None  # B had an index of the store: it followed A's change

    owls = b.files.create(file=("owls.txt", b"Owls hunt at night. A barn owl swallows its prey whole."),
                          purpose="assistants")
    assert b.vector_stores.files.create_and_poll(file_id=owls.id, vector_store_id=store_id).status == "completed"
    assert top_file(a, store_id, "barn owl prey") == owls.id  # ingested on B, found on A
    assert b.files.content(ids["dogs.txt"]).read().startswith(b"Dogs")  # bytes uploaded on A, read on B

    b.vector_stores.delete(store_id)
    with pytest.raises(openai.NotFoundError):
        a.vector_stores.search(store_id, query="gills")
