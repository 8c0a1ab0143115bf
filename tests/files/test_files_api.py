"""/v1/files through the openai SDK: upload, list (purpose, order, paging), retrieve, content, delete, limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from .conftest import sdk


def test_upload_retrieve_content_delete(client: openai.OpenAI, tmp_path: Path) -> None:
    data = "héllo wörld\n".encode() * 100
    created = client.files.create(file=("notes.txt", data), purpose="assistants")
    assert created.id.startswith("file-") and created.bytes == len(data)
    assert created.filename == "notes.txt" and created.purpose == "assistants" and created.status == "processed"
    assert client.files.retrieve(created.id).model_dump() == created.model_dump()
    assert client.files.content(created.id).read() == data
    stored = list((tmp_path / "files").iterdir())
    assert [p.name for p in stored] == [created.id]  # bytes under [files].dir, named by id
    gone = client.files.delete(created.id)
    assert gone.deleted and gone.id == created.id
    assert not list((tmp_path / "files").iterdir())
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_list_filters_by_purpose_and_pages_in_order(client: openai.OpenAI) -> None:
    ids = [client.files.create(file=(f"f{n}.txt", b"x"), purpose="user_data" if n % 2 else "assistants").id
           for n in range(5)]
    newest_first = [f.id for f in client.files.list()]
    assert newest_first == ids[::-1]
    assert [f.id for f in client.files.list(purpose="user_data")] == [ids[3], ids[1]]
    page = client.files.list(limit=2, order="asc")
    assert [f.id for f in page.data] == ids[:2] and page.has_more
    assert [f.id for f in client.files.list(limit=2, order="asc")] == ids  # auto-paging with `after`


def test_filename_is_reduced_to_its_base_name(client: openai.OpenAI) -> None:
    created = client.files.create(file=("../../etc/passwd.txt", b"x"), purpose="assistants")
    assert created.filename == "passwd.txt"


def test_empty_file_and_unknown_purpose_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.files.create(file=("empty.txt", b""), purpose="assistants")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("a.txt", b"x"), purpose="nonsense")  # type: ignore[arg-type]


def test_max_bytes_is_413_and_larger_than_the_body_cap_is_allowed(files_server: Callable[..., str]) -> None:
    url = files_server({"files.max_bytes": 2_000_000, "server.max_body_bytes": 100_000})
    client = sdk(url)
    ok = client.files.create(file=("big.txt", b"a" * 1_500_000), purpose="assistants")  # over the body cap
    assert ok.bytes == 1_500_000
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("huge.txt", b"a" * 2_100_000), purpose="assistants")
    assert info.value.status_code == 413
    assert info.value.body["code"] == "payload_too_large"  # type: ignore[index]
    # other routes keep [server].max_body_bytes
    r = httpx.post(f"{url}/v1/vector_stores", content=b"{" + b" " * 200_000 + b"}",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_expires_after_sets_expires_at(client: openai.OpenAI) -> None:
    created = client.files.create(file=("t.txt", b"x"), purpose="assistants",
                                  expires_after={"anchor": "created_at", "seconds": 3600})
    assert created.expires_at == created.created_at + 3600
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("t.txt", b"x"), purpose="assistants",
                            expires_after={"anchor": "created_at", "seconds": 5})


def test_upload_needs_the_api_key_when_one_is_set(files_server: Callable[..., str]) -> None:
    url = files_server({"auth.api_keys": ["k1"]})
    with pytest.raises(openai.AuthenticationError):
        sdk(url).files.list()
    good = openai.OpenAI(base_url=f"{url}/v1", api_key="k1", max_retries=0)
    assert good.files.create(file=("a.txt", b"x"), purpose="assistants").bytes == 1
