"""The /v1/containers API through the openai SDK against a live server: containers, their files, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from ddx_omni.containers.service import ContainersService, containers_database
from ddx_omni.containers.store import ContainerStore
from ddx_omni.responses.schemas import not_found
from tests.responses.conftest import storage_url  # noqa: F401 - every test here runs on SQLite and PostgreSQL

from .conftest import container_settings


@pytest.fixture
def client(server_factory: Callable[..., str], tmp_path: Path, storage_url: str) -> openai.OpenAI:  # noqa: F811
    # only this component: the containers API needs no model
    service = ContainersService(container_settings(tmp_path, storage_url=storage_url))
    url = server_factory(None, {"code_interpreter": service})
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=30, max_retries=0)


def test_create_retrieve_list_delete(client: openai.OpenAI) -> None:
    made = client.containers.create(name="analysis", expires_after={"anchor": "last_active_at", "minutes": 5})
    assert made.id.startswith("cntr_") and made.object == "container" and made.status == "running"
    assert made.name == "analysis" and made.expires_after.minutes == 5 and made.memory_limit == "1g"
    assert client.containers.retrieve(made.id).id == made.id
    others = [client.containers.create(name=f"c{i}") for i in range(3)]
    assert others[0].expires_after.minutes == 20  # the idle_minutes default
    page = client.containers.list(limit=2)
    assert [c.id for c in page.data] == [others[2].id, others[1].id] and page.has_more
    assert [c.id for c in client.containers.list(limit=1, order="asc")] == \
        [made.id] + [c.id for c in others]
    assert [c.id for c in client.containers.list(name="c1").data] == [others[1].id]
    client.containers.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve(made.id)


def test_files_upload_list_download_delete(client: openai.OpenAI) -> None:
    c = client.containers.create(name="files")
    f = client.containers.files.create(c.id, file=("data.csv", b"a,b\n1,2\n"))
    assert f.object == "container.file" and f.path == "/mnt/data/data.csv" and f.bytes == 8
    assert f.source == "user" and f.container_id == c.id
    assert client.containers.files.retrieve(f.id, container_id=c.id).path == f.path
    assert [x.id for x in client.containers.files.list(c.id).data] == [f.id]
    assert client.containers.files.content.retrieve(f.id, container_id=c.id).read() == b"a,b\n1,2\n"
    again = client.containers.files.create(c.id, file=("data.csv", b"new"))
    assert again.id == f.id and again.bytes == 3  # same path, same file
    client.containers.files.delete(f.id, container_id=c.id)
    assert client.containers.files.list(c.id).data == []
    with pytest.raises(openai.NotFoundError):
        client.containers.files.retrieve(f.id, container_id=c.id)


def test_bad_requests_have_the_error_shape(client: openai.OpenAI) -> None:
    c = client.containers.create(name="x")
    with pytest.raises(openai.NotFoundError) as missing:
        client.containers.files.create(c.id, file_id="file-nope")
    assert missing.value.body["code"] == "not_found"  # no Files API on this server: the id is unknown
    with pytest.raises(openai.BadRequestError):
        client.containers.list(limit=0)
    with pytest.raises(openai.UnprocessableEntityError):
        client.containers.create(name="x", memory_limit="3g")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as too_big:
        client.containers.create(name="x", memory_limit="64g")
    assert "memory_limit" in too_big.value.message
    raw = httpx.post(f"{client.base_url}containers/{c.id}/files", content=b"not json",
                     headers={"Content-Type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "file_id"
    traversal = httpx.post(f"{client.base_url}containers/{c.id}/files", files={"file": ("..", b"x")})
    assert traversal.status_code == 400 and "error" in traversal.json()


def test_max_containers(server_factory: Callable[..., str], tmp_path: Path, storage_url: str) -> None:  # noqa: F811
    service = ContainersService(container_settings(tmp_path, {"code_interpreter.max_containers": 2}, storage_url))
    url = server_factory(None, {"code_interpreter": service})
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=30, max_retries=0)
    first = client.containers.create(name="1")
    client.containers.create(name="2")
    with pytest.raises(openai.RateLimitError) as refused:
        client.containers.create(name="3")
    assert "max_containers" in refused.value.message
    client.containers.delete(first.id)
    assert client.containers.create(name="3").status == "running"


class UploadedFiles:
    """Stands in for the Files API (issue 12, another branch, not merged here): its read_bytes by id."""

    def __init__(self, files: dict[str, tuple[str, bytes]]) -> None:
        self.files = files

    async def read_bytes(self, file_id: str) -> tuple[str, bytes]:
        if file_id not in self.files:
            raise not_found(f"No such file: {file_id}")
        return self.files[file_id]


def test_file_ids_are_copied_into_mnt_data(server_factory: Callable[..., str], tmp_path: Path,
                                           storage_url: str) -> None:  # noqa: F811
    uploaded = UploadedFiles({"file-abc": ("sales.csv", b"q,n\n1,5\n"), "file-def": ("notes.txt", b"hi")})
    service = ContainersService(container_settings(tmp_path, storage_url=storage_url), uploaded)
    url = server_factory(None, {"code_interpreter": service})
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=30, max_retries=0)
    c = client.containers.create(name="with files", file_ids=["file-abc"])
    assert [f.path for f in client.containers.files.list(c.id)] == ["/mnt/data/sales.csv"]
    added = client.containers.files.create(c.id, file_id="file-def")
    assert added.path == "/mnt/data/notes.txt" and added.source == "user"
    assert client.containers.files.content.retrieve(added.id, container_id=c.id).read() == b"hi"
    with pytest.raises(openai.NotFoundError):
        client.containers.create(name="bad", file_ids=["file-missing"])



def test_concurrent_creates_get_distinct_uids(server_factory: Callable[..., str], tmp_path: Path,
                                              storage_url: str) -> None:  # noqa: F811
    """Each container's seq gives it its own uid: creates racing on one database must never share one."""
    settings = container_settings(tmp_path, storage_url=storage_url)
    url = server_factory(None, {"code_interpreter": ContainersService(settings)})
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=30, max_retries=0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda n: client.containers.create(name=f"race {n}").id, range(16)))

    async def seqs() -> list[int]:
        store = ContainerStore(containers_database(settings))  # a connection of its own, on this loop
        await store.open()
        try:
            return [(await store.container(c))["seq"] for c in made]  # type: ignore[index]
        finally:
            await store.close()

    assert sorted(asyncio.run(seqs())) == list(range(1, 17))
