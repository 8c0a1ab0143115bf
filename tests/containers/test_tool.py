"""The code_interpreter ToolKind on its own (bind → new_item → run → annotate), as the turn loop drives it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ddx_omni.containers.sandbox import Sandbox
from ddx_omni.containers.service import ContainersService
from ddx_omni.core.errors import ApiError
from ddx_omni.tools.base import ToolRequestContext
from ddx_omni.tools.code_interpreter import CodeInterpreterKind


def ctx(history: list[dict[str, Any]] | None = None) -> ToolRequestContext:
    return ToolRequestContext(response_id="resp_test", history=history or [])


async def call(bound: Any, code: str) -> tuple[dict[str, Any], str, list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    item = bound.new_item("code_interpreter", {"code": code})
    text = await bound.run(item, "code_interpreter", {"code": code}, lambda t, **f: events.append((t, f)))
    return item, text, events


async def test_auto_container_is_made_at_the_first_call_and_keeps_state(service: ContainersService) -> None:
    bound = await CodeInterpreterKind(service).bind({"type": "code_interpreter", "container": {"type": "auto"}}, ctx())
    assert (await service.list_containers(None, 100, "asc"))["data"] == []  # nothing made until the model calls it
    item, text, events = await call(bound, "x = 20")
    assert item["type"] == "code_interpreter_call" and item["id"].startswith("ci_")
    assert item["container_id"] == bound.container_id and item["status"] == "completed"
    assert (await service.get(bound.container_id))["status"] == "running"
    assert [e[0] for e in events] == ["response.code_interpreter_call.in_progress",
                                      "response.code_interpreter_call_code.delta",
                                      "response.code_interpreter_call_code.done",
                                      "response.code_interpreter_call.interpreting",
                                      "response.code_interpreter_call.completed"]
    assert events[1][1] == {"delta": "x = 20"} and events[2][1] == {"code": "x = 20"}
    assert item["outputs"] == [] and text == "(no output)"
    item, text, _ = await call(bound, "print(x + 22)")
    assert item["outputs"] == [{"type": "logs", "logs": "42\n"}] and text == "42\n"


async def test_python_errors_are_logs_of_a_completed_call(service: ContainersService) -> None:
    bound = await CodeInterpreterKind(service).bind({"type": "code_interpreter", "container": "auto"}, ctx())
    item, text, _ = await call(bound, "qwe rty uio")
    assert item["status"] == "completed" and "SyntaxError" in item["outputs"][0]["logs"] and "SyntaxError" in text


async def test_a_timeout_fails_the_call_not_the_response(make_service: Callable[..., Any]) -> None:
    service = await make_service({"code_interpreter.timeout_s": 1})
    bound = await CodeInterpreterKind(service).bind({"type": "code_interpreter", "container": "auto"}, ctx())
    item, text, events = await call(bound, "while True: pass")
    assert item["status"] == "failed" and "timed out" in item["outputs"][0]["logs"]
    assert text.startswith("Execution failed.") and events[-1][0] == "response.code_interpreter_call.completed"


async def test_figure_is_an_image_output(service: ContainersService) -> None:
    pytest.importorskip("matplotlib")
    bound = await CodeInterpreterKind(service).bind({"type": "code_interpreter", "container": "auto"}, ctx())
    item, text, _ = await call(bound, "import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [3, 5])")
    images = [o for o in item["outputs"] if o["type"] == "image"]
    assert len(images) == 1 and images[0]["url"].startswith("data:image/png;base64,")
    assert "1 image(s) shown to the user" in text


async def test_written_files_are_cited_where_the_answer_names_them(service: ContainersService) -> None:
    bound = await CodeInterpreterKind(service).bind({"type": "code_interpreter", "container": "auto"}, ctx())
    _, text, _ = await call(bound, "open('/mnt/data/report.csv', 'w').write('a,b\\n')")
    assert "/mnt/data/report.csv" in text
    answer = "Saved it to [report.csv](sandbox:/mnt/data/report.csv)."
    notes = bound.annotate(answer)
    files = (await service.list_files(bound.container_id, None, 20, "asc"))["data"]
    assert [n["type"] for n in notes] == ["container_file_citation"]
    note = notes[0]
    assert note["file_id"] == files[0]["id"] and note["container_id"] == bound.container_id
    assert note["filename"] == "report.csv"
    assert answer[note["start_index"]:note["end_index"]] == "sandbox:/mnt/data/report.csv"
    assert bound.annotate("No file mentioned.") == []


async def test_a_named_container_and_the_conversations_last_one(service: ContainersService) -> None:
    kind = CodeInterpreterKind(service)
    made = await service.create("mine")
    bound = await kind.bind({"type": "code_interpreter", "container": made["id"]}, ctx())
    await call(bound, "y = 'kept'")
    history = [{"type": "code_interpreter_call", "id": "ci_1", "container_id": made["id"], "code": "y = 'kept'"}]
    again = await kind.bind({"type": "code_interpreter", "container": {"type": "auto"}}, ctx(history))
    assert again.container_id == made["id"]
    _, text, _ = await call(again, "y")
    assert text == "'kept'\n"
    with pytest.raises(ApiError) as missing:
        await kind.bind({"type": "code_interpreter", "container": "cntr_nope"}, ctx())
    assert missing.value.status == 404
    with pytest.raises(ApiError) as bad:
        await kind.bind({"type": "code_interpreter", "container": {"type": "manual"}}, ctx())
    assert bad.value.status == 400


async def test_refused_with_400_where_no_sandbox_can_be_built(make_service: Callable[..., Any]) -> None:
    service = await make_service(sandbox=Sandbox(bwrap=None))
    with pytest.raises(ApiError) as refused:
        await CodeInterpreterKind(service).bind({"type": "code_interpreter", "container": "auto"}, ctx())
    assert refused.value.status == 400 and "bubblewrap" in refused.value.message
