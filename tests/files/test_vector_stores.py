"""/v1/vector_stores through the openai SDK: stores, files, batches, background ingestion, search, cascades."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import wait_for

from .conftest import DOCS, animal_store, files_query, sdk, upload_corpus


def test_store_lifecycle_with_counts_usage_and_metadata(client: openai.OpenAI) -> None:
    ids = upload_corpus(client)
    store = client.vector_stores.create(name="zoo", file_ids=list(ids.values()), metadata={"team": "a"},
                                        expires_after={"anchor": "last_active_at", "days": 7})
    assert store.id.startswith("vs_") and store.metadata == {"team": "a"}
    assert store.expires_at == store.last_active_at + 7 * 86400
    wait_for(lambda: client.vector_stores.retrieve(store.id).status == "completed", 30)
    done = client.vector_stores.retrieve(store.id)
    assert done.file_counts.completed == 3 and done.file_counts.total == 3 and done.usage_bytes > 0
    renamed = client.vector_stores.update(store.id, name="zoo 2", metadata={"team": "b"})
    assert renamed.name == "zoo 2" and renamed.metadata == {"team": "b"}
    assert store.id in [s.id for s in client.vector_stores.list()]
    assert client.vector_stores.delete(store.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)
    assert client.files.retrieve(ids["cats.md"]).id  # deleting a store keeps the files


def test_search_ranks_the_answer_file_first_with_scores_in_unit_range(client: openai.OpenAI) -> None:
    store_id, ids = animal_store(client)
    cases = {"what is a group of cats called?": "cats.md", "Which dog breed is the most intelligent?": "dogs.txt",
             "largest living fish": "fish.html"}
    for query, answer in cases.items():
        results = list(client.vector_stores.search(store_id, query=query))
        assert results and results[0].filename == answer and results[0].file_id == ids[answer]
        assert all(0 <= r.score <= 1 for r in results)
        assert results[0].content[0].type == "text" and results[0].content[0].text
    html = list(client.vector_stores.search(store_id, query="whale shark"))[0].content[0].text
    assert "tracking" not in html and "Home | About" not in html  # scripts and navigation dropped


def test_search_filters_comparison_and_compound(client: openai.OpenAI) -> None:
    store_id, _ = animal_store(client)
    query = "cats dogs fish gills barks purr"

    def found(filters: dict) -> set[str]:
        return {r.filename for r in client.vector_stores.search(store_id, query=query, filters=filters)}  # type: ignore[arg-type]

    assert found({"type": "eq", "key": "kind", "value": "canine"}) == {"dogs.txt"}
    assert found({"type": "ne", "key": "kind", "value": "canine"}) == {"cats.md", "fish.html"}
    assert found({"type": "gt", "key": "legs", "value": 2}) == {"cats.md", "dogs.txt"}
    assert found({"type": "lte", "key": "legs", "value": 0}) == {"fish.html"}
    assert found({"type": "in", "key": "kind", "value": ["fish", "feline"]}) == {"cats.md", "fish.html"}
    assert found({"type": "nin", "key": "kind", "value": ["fish", "feline"]}) == {"dogs.txt"}
    assert found({"type": "eq", "key": "pet", "value": False}) == {"fish.html"}
    assert found({"type": "and", "filters": [{"type": "eq", "key": "pet", "value": True},
                                             {"type": "ne", "key": "kind", "value": "feline"}]}) == {"dogs.txt"}
    assert found({"type": "or", "filters": [{"type": "eq", "key": "kind", "value": "fish"},
                                            {"type": "and", "filters": [{"type": "eq", "key": "kind",
                                                                         "value": "feline"}]}]}) == {"cats.md",
                                                                                                    "fish.html"}


def test_max_num_results_and_score_threshold(client: openai.OpenAI) -> None:
    store_id, _ = animal_store(client)
    query = "cats dogs fish"
    everything = list(client.vector_stores.search(store_id, query=query))
    assert len(everything) == 3
    assert len(list(client.vector_stores.search(store_id, query=query, max_num_results=1))) == 1
    cut = sorted(r.score for r in everything)[1]
    kept = list(client.vector_stores.search(store_id, query=query, ranking_options={"score_threshold": cut}))
    assert kept and all(r.score >= cut for r in kept) and len(kept) < 3
    with pytest.raises(openai.UnprocessableEntityError):
        client.vector_stores.search(store_id, query=query, max_num_results=51)


def test_query_list_and_rewrite(client: openai.OpenAI) -> None:
    store_id, _ = animal_store(client)
    page = client.vector_stores.search(store_id, query=["clowder", "gills"])
    assert {r.filename for r in page} == {"cats.md", "fish.html"}
    raw = client.with_options().post(f"/vector_stores/{store_id}/search", cast_to=httpx.Response,
                                     body={"query": "what is the largest fish?", "rewrite_query": True})
    assert raw.json()["search_query"] == ["largest fish"]


def test_bad_input_is_a_clear_4xx(client: openai.OpenAI) -> None:
    store_id, ids = animal_store(client)
    with pytest.raises(openai.BadRequestError, match="query"):
        client.vector_stores.search(store_id, query="")
    with pytest.raises(openai.BadRequestError, match="colour"):
        client.vector_stores.search(store_id, query="cats", filters={"type": "eq", "key": "colour", "value": "red"})
    with pytest.raises(openai.BadRequestError, match="filters"):
        client.vector_stores.search(store_id, query="cats", filters={"type": "like", "key": "kind", "value": "x"})  # type: ignore[typeddict-item]
    with pytest.raises(openai.NotFoundError, match="vs_missing"):
        client.vector_stores.search("vs_missing", query="cats")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id="vs_missing", file_id=ids["cats.md"])
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=store_id, file_id="file-missing")
    binary = client.files.create(file=("tool.exe", b"MZ\x90\x00\x03"), purpose="assistants")
    with pytest.raises(openai.BadRequestError, match="not supported") as info:
        client.vector_stores.files.create(vector_store_id=store_id, file_id=binary.id)
    assert info.value.body["code"] == "unsupported_file"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="max_chunk_size_tokens"):
        client.vector_stores.create(chunking_strategy={"type": "static", "static": {
            "max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}})
    with pytest.raises(openai.BadRequestError, match="chunk_overlap_tokens"):
        client.vector_stores.create(chunking_strategy={"type": "static", "static": {
            "max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150}})
    with pytest.raises(openai.BadRequestError, match="attributes"):
        client.vector_stores.files.create(vector_store_id=store_id, file_id=ids["cats.md"],
                                          attributes={f"k{n}": n for n in range(17)})


def test_a_file_that_cannot_be_parsed_fails_alone(client: openai.OpenAI) -> None:
    good = client.files.create(file=("good.md", b"Lighthouses guide ships at night."), purpose="assistants")
    broken_pdf = client.files.create(file=("broken.pdf", b"%PDF-1.4 this is not really a pdf"), purpose="assistants")
    broken_json = client.files.create(file=("broken.json", b"{not json"), purpose="assistants")
    store = client.vector_stores.create(name="mixed")
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id, file_ids=[good.id, broken_pdf.id, broken_json.id])
    assert batch.file_counts.completed == 1 and batch.file_counts.failed == 2 and batch.status == "completed"
    pdf = client.vector_stores.files.retrieve(file_id=broken_pdf.id, vector_store_id=store.id)
    assert pdf.status == "failed" and pdf.last_error and pdf.last_error.code == "invalid_file"
    assert "PDF" in pdf.last_error.message
    failed = list(client.vector_stores.files.list(vector_store_id=store.id, filter="failed"))
    assert {f.id for f in failed} == {broken_pdf.id, broken_json.id}
    assert list(client.vector_stores.search(store.id, query="lighthouses"))[0].file_id == good.id


def test_files_of_a_store_list_update_content_delete(client: openai.OpenAI) -> None:
    store_id, ids = animal_store(client)
    listed = list(client.vector_stores.files.list(vector_store_id=store_id, order="asc"))
    assert [f.id for f in listed] == [ids[n] for n in DOCS]
    updated = client.vector_stores.files.update(file_id=ids["cats.md"], vector_store_id=store_id,
                                                attributes={"kind": "big cat"})
    assert updated.attributes == {"kind": "big cat"}
    hits = client.vector_stores.search(store_id, query="cats", filters={"type": "eq", "key": "kind",
                                                                        "value": "big cat"})
    assert [r.filename for r in hits] == ["cats.md"]
    content = list(client.vector_stores.files.content(file_id=ids["fish.html"], vector_store_id=store_id))
    assert content[0].text.startswith("Fish") and "whale shark" in content[0].text
    removed = client.vector_stores.files.delete(file_id=ids["dogs.txt"], vector_store_id=store_id)
    assert removed.deleted and removed.object == "vector_store.file.deleted"
    assert "dogs.txt" not in {r.filename for r in client.vector_stores.search(store_id, query="dogs barks")}
    assert client.files.retrieve(ids["dogs.txt"]).id  # the file itself stays


def test_deleting_a_file_removes_it_from_every_store_and_the_index(client: openai.OpenAI, tmp_path: Path,
                                                                   storage_url: str) -> None:
    ids = upload_corpus(client)
    stores = [client.vector_stores.create(name=f"s{n}", file_ids=list(ids.values())).id for n in range(2)]
    for store_id in stores:
        wait_for(lambda s=store_id: client.vector_stores.retrieve(s).status == "completed", 30)
    client.files.delete(ids["cats.md"])
    for store_id in stores:
        assert client.vector_stores.retrieve(store_id).file_counts.total == 2
        assert not list(client.vector_stores.search(store_id, query="clowder"))
        with pytest.raises(openai.NotFoundError):
            client.vector_stores.files.retrieve(file_id=ids["cats.md"], vector_store_id=store_id)
    assert files_query(storage_url, tmp_path, "SELECT COUNT(*) FROM chunks WHERE file_id = ?",
                       (ids["cats.md"],)) == [(0,)]


def test_batch_cancel_and_list_files(client: openai.OpenAI) -> None:
    ids = upload_corpus(client)
    store = client.vector_stores.create(name="b")
    batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=list(ids.values()))
    assert batch.object == "vector_store.files_batch" and batch.file_counts.total == 3
    cancelled = client.vector_stores.file_batches.cancel(batch_id=batch.id, vector_store_id=store.id)
    assert cancelled.file_counts.in_progress == 0
    assert cancelled.file_counts.cancelled + cancelled.file_counts.completed == 3
    assert cancelled.status == "cancelled" or cancelled.file_counts.cancelled == 0
    listed = list(client.vector_stores.file_batches.list_files(batch_id=batch.id, vector_store_id=store.id))
    assert {f.id for f in listed} == set(ids.values())
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.file_batches.retrieve(batch_id="vsfb_missing", vector_store_id=store.id)


def test_unfinished_ingestion_resumes_after_a_restart(files_server: Callable[..., str], tmp_path: Path,
                                                      storage_url: str) -> None:
    client = sdk(files_server())
    ids = upload_corpus(client)
    store = client.vector_stores.create(name="r")
    # a file left in_progress by a killed process (its row written, its job never run)
    files_query(storage_url, tmp_path,
                "INSERT INTO vs_files (vector_store_id, file_id, status, attributes, chunking, created_at)"
                " VALUES (?, ?, 'in_progress', '{}', ?, 0)",
                (store.id, ids["cats.md"], '{"type":"static","static":{"max_chunk_size_tokens":800,'
                                           '"chunk_overlap_tokens":400}}'))
    client2 = sdk(files_server())  # a second server on the same database
    wait_for(lambda: client2.vector_stores.retrieve(store.id).status == "completed", 30)
    assert list(client2.vector_stores.search(store.id, query="clowder"))[0].file_id == ids["cats.md"]
