"""The code_interpreter tool kind: the model's Python runs in a container's sandboxed kernel (containers/).

`{"type": "code_interpreter", "container": "cntr_…" | "auto" | {"type": "auto", "file_ids", "memory_limit"}}`.
With `auto` the container of the conversation's last code_interpreter_call is reused while it is running (so
variables persist across turns), else one is created at the first call. Each call becomes a
`code_interpreter_call` item (code, container_id, outputs: logs and PNG images, status) with its events;
files the code writes under /mnt/data are cited in the final answer (`container_file_citation`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..containers.service import ContainersService, Execution
from ..core.errors import ApiError
from ..responses.schemas import bad_request, new_id
from .base import Emit, FunctionSpec, ReplayedCall, ToolRequestContext

ITEM_TYPE = "code_interpreter_call"
FUNCTION = FunctionSpec(
    name="code_interpreter",
    description=("Run Python 3 code in a stateful sandbox (variables and imports persist between calls; numpy is "
                 "available; no network). Print what you need to see; the last expression's value is shown. "
                 "Files are read from and written to /mnt/data; matplotlib figures are shown to the user."),
    parameters={"type": "object", "properties": {"code": {"type": "string", "description": "Python code to run"}},
                "required": ["code"], "additionalProperties": False},
)


def model_text(outputs: list[dict[str, Any]] | None, files: list[dict[str, Any]], status: str) -> str:
    """What the model reads back from one call: the logs, a note per image and per file written."""
    parts = [o["logs"] for o in outputs or [] if o.get("type") == "logs" and o.get("logs")]
    images = sum(1 for o in outputs or [] if o.get("type") == "image")
    if images:
        parts.append(f"[{images} image(s) shown to the user]")
    if files:
        parts.append("Files written: " + ", ".join(f"{f['path']} ({f['bytes']} bytes)" for f in files))
    text = "\n".join(parts) or "(no output)"
    return text if status != "failed" else f"Execution failed.\n{text}"


def outputs_of(execution: Execution) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = [{"type": "logs", "logs": execution.logs}] if execution.logs else []
    return outputs + [{"type": "image", "url": url} for url in execution.images]


class BoundCodeInterpreter:
    """One request's code_interpreter entry, bound to one container (made at the first call when `auto`)."""

    label = "code_interpreter"

    def __init__(self, containers: ContainersService, container_id: str, create: dict[str, Any] | None) -> None:
        self.containers = containers
        self.container_id = container_id
        self._create = create  # the auto container's settings while it does not exist yet
        self.written: list[dict[str, Any]] = []  # container.file objects this response's calls wrote

    def functions(self) -> list[FunctionSpec]:
        return [FUNCTION]

    def new_item(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG002 - one function
        return {"id": new_id("ci"), "type": ITEM_TYPE, "status": "in_progress", "code": _code(arguments),
                "container_id": self.container_id, "outputs": None}

    async def run(self, item: dict[str, Any], name: str, arguments: dict[str, Any],  # noqa: ARG002 - in item
                  emit: Emit) -> str:
        code = item["code"]
        emit("response.code_interpreter_call.in_progress")
        emit("response.code_interpreter_call_code.delta", delta=code)
        emit("response.code_interpreter_call_code.done", code=code)
        item["status"] = "interpreting"
        emit("response.code_interpreter_call.interpreting")
        try:
            await self._ensure_container()
            execution = await self.containers.execute(self.container_id, code)
        except ApiError as exc:  # an expired container, a full server: the model reads why
            item["outputs"], item["status"] = [{"type": "logs", "logs": exc.message}], "failed"
            emit("response.code_interpreter_call.completed")
            return model_text(item["outputs"], [], "failed")
        item["outputs"] = outputs_of(execution)
        item["status"] = "failed" if execution.failure else "completed"
        self.written += [f for f in execution.files if f["id"] not in {w["id"] for w in self.written}]
        emit("response.code_interpreter_call.completed")
        return model_text(item["outputs"], execution.files, item["status"])

    async def _ensure_container(self) -> None:
        if self._create is not None:
            settings, self._create = self._create, None
            await self.containers.create(container_id=self.container_id, **settings)

    def annotate(self, text: str) -> list[dict[str, Any]]:
        """Cite each file written in this response where the answer names it (its path, else its name)."""
        notes = []
        for file in self.written:
            filename = file["path"].rsplit("/", 1)[-1]
            found = list(re.finditer(r"(?:sandbox:)?" + re.escape(file["path"]), text)) or \
                list(re.finditer(r"(?<![\w.-])" + re.escape(filename) + r"(?![\w-])", text))
            notes += [{"type": "container_file_citation", "container_id": file["container_id"],
                       "file_id": file["id"], "filename": filename, "start_index": m.start(),
                       "end_index": m.end()} for m in found]
        return sorted(notes, key=lambda n: n["start_index"])


def _code(arguments: dict[str, Any]) -> str:
    code = arguments.get("code")
    if isinstance(code, str):
        return code
    strings = [v for v in arguments.values() if isinstance(v, str)]
    return strings[0] if len(strings) == 1 else ""  # a model that misnamed the one argument still runs


class CodeInterpreterKind:
    """`type: code_interpreter`, wired with the containers component."""

    type = "code_interpreter"
    item_types = (ITEM_TYPE,)

    def __init__(self, containers: ContainersService) -> None:
        self.containers = containers

    async def bind(self, spec: dict[str, Any], ctx: ToolRequestContext) -> BoundCodeInterpreter:
        await self.containers.require_sandbox()  # the 400 that says why code cannot run here
        container = spec.get("container", "auto")
        if isinstance(container, str) and container != "auto":
            await self.containers.running(container)
            return BoundCodeInterpreter(self.containers, container, None)
        auto = {"type": "auto"} if container == "auto" else container
        if not isinstance(auto, dict) or auto.get("type") != "auto":
            raise bad_request("tools.container: a container id, 'auto', or {\"type\": \"auto\", ...}",
                              "tools.container")
        file_ids = auto.get("file_ids") or []
        if not isinstance(file_ids, list) or not all(isinstance(f, str) for f in file_ids):
            raise bad_request("tools.container.file_ids: a list of file ids", "tools.container.file_ids")
        reused = await self._reusable(ctx.history) if not file_ids else None
        if reused is not None:
            return BoundCodeInterpreter(self.containers, reused, None)
        settings = {"name": f"auto ({ctx.response_id})", "file_ids": file_ids,
                    "memory_limit": auto.get("memory_limit")}
        return BoundCodeInterpreter(self.containers, new_id("cntr"), settings)

    async def _reusable(self, history: list[dict[str, Any]]) -> str | None:
        """The container of the conversation's last code_interpreter_call, when it is still running."""
        for item in reversed(history):
            if item.get("type") == ITEM_TYPE and item.get("container_id"):
                try:
                    await self.containers.running(item["container_id"])
                except ApiError:
                    return None
                return str(item["container_id"])
        return None

    def replay(self, items: list[dict[str, Any]]) -> dict[str, ReplayedCall]:
        """Earlier calls as the model made them: the code it sent and the text it read back."""
        return {item["id"]: ReplayedCall(FUNCTION.name, json.dumps({"code": item.get("code") or ""}),
                                         model_text(item.get("outputs"), [], item.get("status", "completed")))
                for item in items if item.get("type") == ITEM_TYPE and item.get("id")}
