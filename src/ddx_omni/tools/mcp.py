"""The `mcp` built-in Responses tool: remote or operator-configured MCP servers, listed once per conversation,
with approvals, shown to the model as one function per allowed MCP tool (protocol: tools/base.py).

Items as OpenAI's: `mcp_list_tools` (made at the start of a turn, unless the chain / conversation already holds
one for the label), `mcp_call`, `mcp_approval_request` (ends the turn; the client answers with an
`mcp_approval_response` input item next turn, which runs the call or tells the model it was declined).
Secrets (`authorization`, header values) stay in memory: echoes of the tool are redacted.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ApiError, api_error
from ..core.settings import McpServerEntry, ResponsesSettings
from ..responses.schemas import bad_request, new_id
from .base import Emit, FunctionSpec, ItemSink, ReplayedCall, ToolRequestContext
from .mcp_client import McpPool, McpTarget, McpUnavailable

log = logging.getLogger("ddx_omni.tools.mcp")

REDACTED = "<redacted>"
LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
SPEC_KEYS = {"type", "server_label", "server_url", "headers", "authorization", "allowed_tools", "require_approval",
             "server_description", "connector_id", "defer_loading"}


def configured_target(entry: McpServerEntry) -> McpTarget:
    return McpTarget(label=entry.label, url=entry.url, headers=tuple(sorted(entry.headers.items())),
                     command=entry.command, args=tuple(entry.args), env=tuple(sorted(entry.env.items())),
                     configured=True)


class McpKind:
    """Binds `{"type": "mcp", ...}` entries; keeps the sessions (and stdio processes) of every server used."""

    type = "mcp"
    item_types = ("mcp_list_tools", "mcp_call", "mcp_approval_request")

    def __init__(self, settings: ResponsesSettings) -> None:
        self.settings = settings
        self.configured = {entry.label: entry for entry in settings.mcp_servers}
        self.pool = McpPool()

    async def stop(self) -> None:
        await self.pool.close_all()  # ends the stdio servers' processes too

    async def bind(self, spec: dict[str, Any], ctx: ToolRequestContext) -> BoundMcp:
        unknown = sorted(set(spec) - SPEC_KEYS)
        if unknown:
            raise bad_request(f"unknown mcp tool field(s): {', '.join(unknown)}", unknown[0])
        label = spec.get("server_label")
        if not isinstance(label, str) or not LABEL.fullmatch(label):
            raise bad_request("server_label: required; a letter, then letters, digits, '-' or '_' (it prefixes "
                              "the model's function names when two servers share a tool name)", "server_label")
        if spec.get("connector_id") is not None:
            raise bad_request("connector_id: OpenAI's hosted connectors are not available here; give a server_url "
                              "or the label of a configured server", "connector_id", code="unsupported_tool")
        _check_approvals(ctx)
        return BoundMcp(self, spec, self._target(spec, label), ctx, _allowed(spec.get("allowed_tools")),
                        _approval_policy(spec.get("require_approval")))

    def _target(self, spec: dict[str, Any], label: str) -> McpTarget:
        url = spec.get("server_url")
        if url is None:
            entry = self.configured.get(label)
            if entry is None:
                configured = ", ".join(sorted(self.configured)) or "none"
                raise bad_request(f"server_url: required, unless server_label names a server configured in "
                                  f"[[responses.mcp_servers]] (configured: {configured})", "server_url")
            return configured_target(entry)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise bad_request("server_url: must be an http(s) URL", "server_url")
        if not any(fnmatch.fnmatchcase(url, pattern) for pattern in self.settings.mcp_allowed_urls):
            raise bad_request(f"server_url: {url} is not allowed by [responses].mcp_allowed_urls "
                              f"(DDX_RESPONSES__MCP_ALLOWED_URLS)", "server_url")
        return McpTarget(label=label, url=url, headers=_headers(spec))

    def replay(self, items: list[dict[str, Any]]) -> dict[str, ReplayedCall]:
        """mcp_call items as calls with their output (or error); a declined approval request as a call the
        user refused, so the model knows."""
        ran = {item.get("approval_request_id") for item in items if item.get("type") == "mcp_call"}
        declined = {item["approval_request_id"]: item for item in items
                    if item.get("type") == "mcp_approval_response" and item.get("approve") is False}
        found: dict[str, ReplayedCall] = {}
        for item in items:
            kind = item.get("type")
            if kind == "mcp_call" and item.get("status") in ("completed", "failed"):
                found[item["id"]] = ReplayedCall(item["name"], item.get("arguments") or "{}", call_text(item))
            elif kind == "mcp_approval_request" and item["id"] in declined and item["id"] not in ran:
                reason = declined[item["id"]].get("reason")
                found[item["id"]] = ReplayedCall(item["name"], item.get("arguments") or "{}",
                                                 "The user declined this call." + (f" Reason: {reason}" if reason
                                                                                   else ""))
        return found


@dataclass
class BoundMcp:
    """One request's MCP server: its tools (listed, or from the history), filters and approval policy."""

    kind: McpKind
    spec: dict[str, Any]
    target: McpTarget
    ctx: ToolRequestContext
    allowed: set[str] | None
    approval: tuple[str, set[str], set[str]]  # (default "always"|"never", always names, never names)
    tools: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.target.label

    @property
    def timeout(self) -> float:
        return self.kind.settings.mcp_timeout_s

    def echo(self) -> dict[str, Any]:
        echo = {key: value for key, value in self.spec.items() if key != "authorization"}
        if isinstance(self.spec.get("headers"), dict):
            echo["headers"] = {name: REDACTED for name in self.spec["headers"]}
        if self.spec.get("authorization"):
            echo["authorization"] = REDACTED
        return echo

    # ---- the turn ------------------------------------------------------------------------------------
    async def prepare(self, sink: ItemSink) -> None:
        stored = self._stored_listing()
        if stored is not None:
            self.tools = stored["tools"]
        else:
            await self._list(sink)
        for request, answer in self._answered_approvals():
            if answer.get("approve") is True:
                await self._run_approved(sink, request)

    def _stored_listing(self) -> dict[str, Any] | None:
        """The newest error-free listing of this label in the chain / conversation (or sent back as input)."""
        for item in reversed(self.ctx.history + self.ctx.input_items):
            if item.get("type") == "mcp_list_tools" and item.get("server_label") == self.label \
                    and not item.get("error"):
                return item
        return None

    async def _list(self, sink: ItemSink) -> None:
        item: dict[str, Any] = {"id": new_id("mcpl"), "type": "mcp_list_tools", "server_label": self.label, "tools": [],
                "error": None}
        emit = sink.add(item)
        emit("response.mcp_list_tools.in_progress")
        try:
            listed = await self.kind.pool.get(self.target).list_tools(self.timeout)
        except Exception as exc:  # any failure is the item's error, never the response's
            item["error"] = _failure_text(exc)
            log.warning("listing the tools of MCP server %s failed: %s", self.label, item["error"])
            emit("response.mcp_list_tools.failed")
        else:
            item["tools"] = [_tool_entry(tool) for tool in listed]
            emit("response.mcp_list_tools.completed")
        self.tools = item["tools"]
        sink.done(item)

    def _answered_approvals(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        requests = {item["id"]: item for item in self.ctx.history
                    if item.get("type") == "mcp_approval_request" and item.get("server_label") == self.label}
        return [(requests[answer["approval_request_id"]], answer) for answer in self.ctx.input_items
                if answer.get("type") == "mcp_approval_response" and answer.get("approval_request_id") in requests]

    async def _run_approved(self, sink: ItemSink, request: dict[str, Any]) -> None:
        arguments = _json_object(request.get("arguments"))
        item = self.new_item(request["name"], arguments)
        item["approval_request_id"] = request["id"]
        emit = sink.add(item)
        if self.allowed is not None and request["name"] not in self.allowed:
            text = self._refuse(item, emit, f"tool {request['name']!r} is not in allowed_tools")
        else:
            await self._stored_session_primed()
            text = await self.run(item, request["name"], arguments, emit)
        sink.done(item, ReplayedCall(request["name"], item["arguments"], text))

    async def _stored_session_primed(self) -> None:
        try:
            await self.kind.pool.get(self.target).prime(self.tools, self.timeout)
        except McpUnavailable:
            pass  # the call reports it

    # ---- BoundTool ----------------------------------------------------------------------------------
    def functions(self) -> list[FunctionSpec]:
        return [FunctionSpec(tool["name"], tool.get("description") or "",
                             tool.get("input_schema") or {"type": "object", "properties": {}})
                for tool in self.tools if self.allowed is None or tool["name"] in self.allowed]

    def defer(self, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        default, always, never = self.approval
        if name in never or (default == "never" and name not in always):
            return None
        return {"id": new_id("mcpr"), "type": "mcp_approval_request", "server_label": self.label, "name": name,
                "arguments": json.dumps(arguments, ensure_ascii=False)}

    def new_item(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG002 - set by run
        return {"id": new_id("mcp"), "type": "mcp_call", "server_label": self.label, "name": name, "arguments": "",
                "output": None, "error": None, "status": "in_progress", "approval_request_id": None}

    async def run(self, item: dict[str, Any], name: str, arguments: dict[str, Any], emit: Emit) -> str:
        emit("response.mcp_call.in_progress")
        text = json.dumps(arguments, ensure_ascii=False)
        emit("response.mcp_call_arguments.delta", delta=text)
        item["arguments"] = text
        emit("response.mcp_call_arguments.done", arguments=text)
        await self._stored_session_primed()
        try:
            result = await self.kind.pool.get(self.target).call_tool(name, arguments, self.timeout)
        except Exception as exc:  # unreachable, timed out, protocol error: the item's error
            item["error"] = _call_error(exc)
            log.warning("MCP call %s on %s failed: %s", name, self.label, item["error"].get("message"))
            return self._failed(item, emit)
        blocks = [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]
        if result.is_error:
            item["error"] = {"type": "mcp_tool_execution_error", "content": blocks}
            return self._failed(item, emit)
        item["output"] = _result_text(result, self.kind.settings.mcp_max_output_chars)
        item["status"] = "completed"
        emit("response.mcp_call.completed")
        return item["output"]

    def _failed(self, item: dict[str, Any], emit: Emit) -> str:
        item["status"] = "failed"
        emit("response.mcp_call.failed")
        return call_text(item)

    def _refuse(self, item: dict[str, Any], emit: Emit, message: str) -> str:
        emit("response.mcp_call.in_progress")
        item["error"] = {"type": "mcp_protocol_error", "code": -32602, "message": message}
        return self._failed(item, emit)

    def annotate(self, text: str) -> list[dict[str, Any]]:  # noqa: ARG002 - the protocol's signature
        return []


# ---- helpers ---------------------------------------------------------------------------------------------

def call_text(item: dict[str, Any]) -> str:
    """What the model reads of an mcp_call: its output, or its error."""
    if item.get("output") is not None:
        return str(item["output"])
    error = item.get("error") or {}
    if isinstance(error, str):
        return f"Error: {error}"
    if error.get("type") == "mcp_tool_execution_error":
        return "Error: " + " ".join(str(b.get("text", "")) for b in error.get("content") or []).strip()
    return f"Error: {error.get('message', 'the call failed')}"


def _result_text(result: Any, cap: int) -> str:
    """Text content, one block per line, then the structured content as JSON when it adds something."""
    texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
    others = [f"[{block.type} content]" for block in result.content if getattr(block, "type", None) != "text"]
    text = "\n".join(texts + others)
    structured = result.structured_content
    if structured is not None and not _says_the_same(text, structured):
        dumped = json.dumps(structured, ensure_ascii=False)
        text = f"{text}\n{dumped}" if text else dumped
    return text if len(text) <= cap else text[:cap] + f"\n[truncated: {len(text) - cap} more characters]"


def _says_the_same(text: str, structured: Any) -> bool:
    """Servers often send structured content twice: as JSON text, or wrapped as {"result": text}."""
    if structured == {"result": text}:
        return True
    try:
        return json.loads(text) == structured
    except ValueError:
        return False


def _call_error(exc: Exception) -> dict[str, Any]:
    from mcp import MCPError

    if isinstance(exc, MCPError):
        return {"type": "mcp_protocol_error", "code": exc.code if hasattr(exc, "code") else -32603,
                "message": str(exc)}
    status = exc.status if isinstance(exc, McpUnavailable) else 502
    return {"type": "http_error", "code": status, "message": _failure_text(exc)}


def _failure_text(exc: Exception) -> str:
    if isinstance(exc, McpUnavailable | ApiError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _tool_entry(tool: Any) -> dict[str, Any]:
    annotations = tool.annotations.model_dump(mode="json", exclude_none=True) if tool.annotations else None
    return {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema,
            "annotations": annotations}


def _json_object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _headers(spec: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    headers = spec.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise bad_request("headers: must be an object of string values", "headers")
    authorization = spec.get("authorization")
    if authorization is not None:
        if not isinstance(authorization, str):
            raise bad_request("authorization: must be a string (an OAuth access token)", "authorization")
        headers = {**headers, "Authorization": f"Bearer {authorization}"}
    return tuple(sorted(headers.items()))


def _allowed(value: Any) -> set[str] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("tool_names")
        if value is None:
            return None
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise bad_request("allowed_tools: a list of tool names, or {tool_names: [...]}", "allowed_tools")
    return set(value)


def _approval_policy(value: Any) -> tuple[str, set[str], set[str]]:
    """require_approval → (default, always, never). OpenAI's default: every call needs approval."""
    if value is None or value in ("always", "never"):
        return (value or "always", set(), set())
    if isinstance(value, dict) and set(value) <= {"always", "never"}:
        names = {key: _allowed(value.get(key)) or set() for key in ("always", "never")}
        # with per-tool lists, a tool named in neither needs approval (OpenAI's default)
        return ("always", names["always"], names["never"])
    raise bad_request("require_approval: 'always', 'never' or {always: {tool_names}, never: {tool_names}}",
                      "require_approval")


def _check_approvals(ctx: ToolRequestContext) -> None:
    """An mcp_approval_response must answer an approval request of the chain / conversation."""
    requests = {item["id"] for item in ctx.history if item.get("type") == "mcp_approval_request"}
    for answer in ctx.input_items:
        if answer.get("type") == "mcp_approval_response" and answer["approval_request_id"] not in requests:
            raise api_error("invalid_request", f"mcp_approval_response answers {answer['approval_request_id']!r}, "
                            "which is no mcp_approval_request of this conversation (give its previous_response_id)",
                            "input")
