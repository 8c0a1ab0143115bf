"""State between calls, files the code writes, expiry (on the timer and after a restart), and the refusal
where no sandbox can be built."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from ddx_omni.containers.sandbox import Sandbox
from ddx_omni.containers.service import ContainersService
from ddx_omni.core.errors import ApiError
from tests.responses.conftest import storage_url  # noqa: F401 - every test here runs on SQLite and PostgreSQL


async def test_state_persists_between_calls(service: ContainersService) -> None:
    c = await service.create("state")
    await service.execute(c["id"], "import numpy as np\ndata = np.arange(10)")
    result = await service.execute(c["id"], "data.sum()")
    assert result.logs == "np.int64(45)\n" or result.logs == "45\n"
    error = await service.execute(c["id"], "undefined_name")
    assert error.error and "NameError" in error.logs and error.failure is None


async def test_written_files_are_reported_and_listed(service: ContainersService) -> None:
    c = await service.create("writer")
    result = await service.execute(c["id"], "import os\nos.makedirs('/mnt/data/out', exist_ok=True)\n"
                                            "open('/mnt/data/out/r.txt', 'w').write('result')")
    assert [f["path"] for f in result.files] == ["/mnt/data/out/r.txt"]
    assert result.files[0]["source"] == "assistant" and result.files[0]["bytes"] == 6
    unchanged = await service.execute(c["id"], "print(1)")
    assert unchanged.files == []  # only what a call wrote is its own
    listed = await service.list_files(c["id"], None, 20, "desc")
    assert [f["id"] for f in listed["data"]] == [result.files[0]["id"]]
    name, data = await service.file_content(c["id"], result.files[0]["id"])
    assert (name, data) == ("r.txt", b"result")


async def test_figures_come_back_as_png(service: ContainersService) -> None:
    pytest.importorskip("matplotlib")  # an optional extra; installed with the dev group
    c = await service.create("plot")
    result = await service.execute(c["id"], "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    assert len(result.images) == 1 and result.images[0].startswith("data:image/png;base64,iVBORw0KGgo")
    assert not result.error and result.logs == ""


async def test_links_and_fifos_planted_by_the_code_are_never_followed(service: ContainersService,
                                                                    tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret")
    c = await service.create("planter")
    await service.execute(c["id"], f"import os\nos.symlink({str(secret)!r}, '/mnt/data/leak.txt')\n"
                                   f"os.symlink('/', '/mnt/data/root')\nos.mkfifo('/mnt/data/pipe')")
    listed = await service.list_files(c["id"], None, 100, "asc")
    assert listed["data"] == []
    with pytest.raises(ApiError) as refused:
        await service.add_file(c["id"], "leak.txt", b"overwritten")
    assert refused.value.status == 400
    assert secret.read_text() == "host secret"


async def test_expiry_kills_the_process_and_removes_the_files(service: ContainersService) -> None:
    c = await service.create("idle", minutes=1)
    await service.execute(c["id"], "open('/mnt/data/f', 'w').write('x')")
    kernel = service.kernels[c["id"]]
    assert await service.sweep() == []  # not idle yet
    await service.store.touch(c["id"], int(time.time()) - 61)
    assert await service.sweep() == [c["id"]]
    assert kernel.proc is not None and kernel.proc.returncode is not None
    assert not service.data_dir(c["id"]).exists()
    assert (await service.get(c["id"]))["status"] == "expired"
    with pytest.raises(ApiError) as expired:
        await service.execute(c["id"], "print(1)")
    assert expired.value.code == "container_expired"


async def test_expiry_also_happens_after_a_restart(make_service: Callable[..., Any]) -> None:
    first = await make_service()
    c = await first.create("left behind", minutes=1)
    await first.execute(c["id"], "open('/mnt/data/f', 'w').write('x')")
    await first.store.touch(c["id"], int(time.time()) - 3600)
    data_dir = first.data_dir(c["id"])
    await first.stop()
    (data_dir.parent / "cntr_orphan").mkdir()  # a directory without a record (a crash mid-create)
    second = await make_service()
    assert (await second.get(c["id"]))["status"] == "expired"
    assert not data_dir.exists() and not (data_dir.parent / "cntr_orphan").exists()


async def test_refused_with_a_reason_and_a_fix_without_bubblewrap(make_service: Callable[..., Any]) -> None:
    service = await make_service(sandbox=Sandbox(bwrap=None))
    with pytest.raises(ApiError) as refused:
        await service.create("x")
    assert refused.value.status == 400 and refused.value.code == "sandbox_unavailable"
    assert "not installed" in refused.value.message and "apt-get install bubblewrap" in refused.value.message
    assert service.health()["sandbox"] == "unavailable"


async def test_refused_when_bwrap_cannot_build_the_sandbox(make_service: Callable[..., Any]) -> None:
    service = await make_service(sandbox=Sandbox(bwrap="/bin/false"))  # a bwrap that fails like a blocked one
    with pytest.raises(ApiError) as refused:
        await service.create("x")
    assert "could not build the sandbox" in refused.value.message and "Fix:" in refused.value.message


async def test_allow_unsandboxed_runs_plain_processes_with_an_error_log(make_service: Callable[..., Any],
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="ddx_omni.containers"):
        service = await make_service({"code_interpreter.allow_unsandboxed": True}, sandbox=Sandbox(bwrap=None))
        c = await service.create("plain")
        result = await service.execute(c["id"], "import os\nprint(os.getcwd())")
    assert result.logs.strip() == str(service.data_dir(c["id"]))
    assert any(r.levelno == logging.ERROR and "UNSANDBOXED" in r.getMessage() for r in caplog.records)
    assert service.health()["sandbox"] == "unsandboxed"


async def test_a_cancelled_kernel_start_leaves_no_process_behind(service: ContainersService) -> None:
    c = await service.create("cancelled")
    row = await service.running(c["id"])
    for delay in (0, 0.005, 0.02):  # inside the spawn, while bwrap builds the sandbox, while Python starts
        start = asyncio.ensure_future(service._kernel(row))
        await asyncio.sleep(delay)
        start.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await start
        if not start.cancelled():  # it was quicker than the cancel: that kernel is legitimately alive
            await start.result().kill()
        service.kernels.pop(c["id"], None)
        await asyncio.sleep(0.2)
        left = [p for p in psutil.process_iter(["cmdline"]) if str(service.data_dir(c["id"])) in
                " ".join(p.info["cmdline"] or [])]
        assert left == [], (delay, left)
