"""Items: normalising what clients send, and turning stored items into the chat engine's messages and tools.

Stored items are always in their canonical shape (an id, a status, message content as a list of parts), so
that `input_items`, conversations and history replay read them back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..tools.base import ReplayedCall
from .schemas import bad_request, new_id, not_found

INPUT_ROLES = ("user", "system", "developer", "assistant")
# Items agents (Codex) send back in their re-sent history that no chat template has a turn for: stored as sent
# (with an id), shown to the model only where a turn exists (custom and shell calls become tool calls).
AGENT_ITEMS = frozenset({"reasoning", "compaction", "web_search_call", "local_shell_call", "custom_tool_call",
                         "custom_tool_call_output", "image_generation_call", "tool_search_call"})
# Tool types Codex offers that this server cannot serve, dropped from the request rather than refused (a 400
# would stop the agent at its first request): `namespace` groups (their calls need a namespaced function_call),
# `custom` freeform tools (a Lark/regex grammar the engines cannot enforce), and the OpenAI-hosted ones.
AGENT_TOOLS = frozenset({"namespace", "custom", "local_shell", "image_generation", "tool_search"})
ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}

ItemLookup = Callable[[str], Awaitable[dict[str, Any] | None]]


async def normalize_input(raw: str | list[dict[str, Any]], lookup: ItemLookup, param: str = "input",
                          passthrough: frozenset[str] | set[str] = frozenset()) -> list[dict[str, Any]]:
    """The request's `input` → canonical items; `item_reference`s are resolved through `lookup`. Items of the
    `passthrough` types (built-in tools' output items sent back by a stateless client) are kept as sent."""
    if isinstance(raw, str):
        return [_message("user", raw, None, f"{param}")]
    items = []
    for index, item in enumerate(raw):
        where = f"{param}[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where}: an item must be an object", where)
        kind = item.get("type") or "message"  # an item without `type` is a message
        if kind == "item_reference":
            ref = item.get("id")
            found = await lookup(ref) if isinstance(ref, str) else None
            if found is None:
                raise not_found(f"{where}: no stored item with id {ref!r}", f"{where}.id")
            items.append(found)
        elif kind == "message":
            items.append(_message(item.get("role"), item.get("content"), item.get("id"), where))
        elif kind == "function_call":
            items.append(_function_call(item, where))
        elif kind == "function_call_output":
            items.append(_function_call_output(item, where))
        elif kind == "mcp_approval_response":
            items.append(_approval_response(item, where))
        elif kind in passthrough or kind in AGENT_ITEMS:
            items.append({**item, "id": item.get("id") or new_id(ID_PREFIX.get(kind, "item"))})
        else:
            raise bad_request(f"{where}: item type {kind!r} is not supported", f"{where}.type")
    return items


def _message(role: Any, content: Any, item_id: Any, where: str) -> dict[str, Any]:
    if role not in INPUT_ROLES:
        raise bad_request(f"{where}.role: must be one of {', '.join(INPUT_ROLES)}", f"{where}.role")
    part_type = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        parts = [_text_part(part_type, content)]
    elif isinstance(content, list):
        parts = [_content_part(part, part_type, f"{where}.content[{n}]") for n, part in enumerate(content)]
    else:
        raise bad_request(f"{where}.content: must be a string or a list of content parts", f"{where}.content")
    return {"id": item_id if isinstance(item_id, str) and item_id else new_id("msg"), "type": "message",
            "role": role, "status": "completed", "content": parts}


def _text_part(part_type: str, text: str) -> dict[str, Any]:
    if part_type == "output_text":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "input_text", "text": text}


def _content_part(part: Any, part_type: str, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise bad_request(f"{where}: a content part must be an object", where)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "refusal"):
        text = part.get("text", part.get("refusal"))
        if not isinstance(text, str):
            raise bad_request(f"{where}.text: must be a string", f"{where}.text")
        return _text_part(part_type, text)
    if kind in ("input_image", "input_file", "input_audio"):
        raise bad_request(f"{where}: {kind} is not supported by the text models served here", f"{where}.type")
    raise bad_request(f"{where}: unknown content part type {kind!r}", f"{where}.type")


def _required_str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where}.{key}: required string", f"{where}.{key}")
    return value


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    arguments = item.get("arguments", "")
    if not isinstance(arguments, str):
        raise bad_request(f"{where}.arguments: must be a JSON string", f"{where}.arguments")
    return {"id": item.get("id") or new_id("fc"), "type": "function_call", "status": "completed",
            "call_id": _required_str(item, "call_id", where), "name": _required_str(item, "name", where),
            "arguments": arguments}


def _function_call_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    output = item.get("output")
    if isinstance(output, list):
        output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
    if not isinstance(output, str):
        raise bad_request(f"{where}.output: must be a string", f"{where}.output")
    return {"id": item.get("id") or new_id("fco"), "type": "function_call_output", "status": "completed",
            "call_id": _required_str(item, "call_id", where), "output": output}


def _approval_response(item: dict[str, Any], where: str) -> dict[str, Any]:
    """The client's answer to an `mcp_approval_request`: approve (bool) and an optional reason."""
    if not isinstance(item.get("approve"), bool):
        raise bad_request(f"{where}.approve: required boolean", f"{where}.approve")
    reason = item.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_request(f"{where}.reason: must be a string", f"{where}.reason")
    return {"id": item.get("id") or new_id("mcpa"), "type": "mcp_approval_response",
            "approval_request_id": _required_str(item, "approval_request_id", where),
            "approve": item["approve"], "reason": reason}


# ---- items → chat messages ----------------------------------------------------------------------------

def _text_of(item: dict[str, Any]) -> str:
    parts = item.get("content") or []
    if len(parts) == 1:  # the common case, on the per-item path of every history replay
        return parts[0].get("text", "")
    return "".join(part.get("text", "") for part in parts)


def to_chat_messages(items: list[dict[str, Any]], instructions: str | None,
                     replays: dict[str, ReplayedCall] | None = None) -> list[dict[str, Any]]:
    """History and input items → OpenAI chat messages. Consecutive function calls become one assistant turn
    with several tool_calls (joined to the assistant text before them), as chat templates expect. Built-in
    tool items become a call and its tool message when `replays` (item id → call) has them; other built-in
    items (listings, approvals) carry no chat turn."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": _text_of(item)})
        elif kind == "function_call":
            _add_call(messages, item["call_id"], item["name"], item["arguments"])
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
        elif kind in ("custom_tool_call", "local_shell_call") and item.get("call_id"):
            arguments = item.get("input") if kind == "custom_tool_call" else item.get("action")
            _add_call(messages, item["call_id"], str(item.get("name") or "shell"), json.dumps({"input": arguments}))
        elif kind == "custom_tool_call_output" and item.get("call_id"):
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": str(item.get("output"))})
        elif replays and (replayed := replays.get(item.get("id", ""))) is not None:
            _add_call(messages, item["id"], replayed.name, replayed.arguments)
            messages.append({"role": "tool", "tool_call_id": item["id"], "content": replayed.output})
    return messages


def _add_call(messages: list[dict[str, Any]], call_id: str, name: str, arguments: str) -> None:
    """A tool call joins the assistant message before it (text, or earlier calls); a tool message ends it."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})


def droppable_prefix_ok(items: list[dict[str, Any]], start: int) -> bool:
    """Truncating at `start` must not leave a tool output whose call was dropped at the front."""
    return start >= len(items) or items[start].get("type") != "function_call_output"


# ---- tools and formats ----------------------------------------------------------------------------------

def served_tools(tools: list[dict[str, Any]] | None, kinds: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """`tools` without the agent-only types (AGENT_TOOLS) and without a `web_search` no kind serves here (Codex
    offers it on every turn); other unknown types still reach `bind_tools`, which refuses them."""
    if tools is None:
        return None
    return [t for t in tools if t.get("type") not in AGENT_TOOLS
            and not (str(t.get("type", "")).startswith("web_search") and t.get("type") not in kinds)]


def function_tools(tools: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The flat function tools of `tools` → (echo for the response object, nested chat tools for the engine).
    Built-in entries are skipped here: `tooling.bind_tools` handles them (and refuses unknown types)."""
    echo, nested = [], []
    for index, tool in enumerate(tools or []):
        where = f"tools[{index}]"
        if tool.get("type") != "function":
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request(f"{where}.name: required string (Responses tools are flat, not nested under "
                              f"'function')", f"{where}.name")
        parameters = tool.get("parameters") or {"type": "object", "properties": {}}
        echo.append({"type": "function", "name": name, "description": tool.get("description"),
                     "parameters": parameters, "strict": tool.get("strict", True)})
        function: dict[str, Any] = {"name": name, "parameters": parameters}
        if tool.get("description"):
            function["description"] = tool["description"]
        nested.append({"type": "function", "function": function})
    return echo, nested or None


def chat_tool_choice(tool_choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if tool_choice is None or isinstance(tool_choice, str):
        if tool_choice not in (None, "auto", "none", "required"):
            raise bad_request("tool_choice: must be auto, none, required or {type: function, name}", "tool_choice")
        return tool_choice
    if tool_choice.get("type") == "function" and isinstance(tool_choice.get("name"), str):
        return {"type": "function", "function": {"name": tool_choice["name"]}}
    if isinstance(tool_choice.get("type"), str) and tool_choice["type"] not in ("function", "allowed_tools"):
        return dict(tool_choice)  # a built-in form ({type: mcp, server_label, name}…): resolved by the turn
    raise bad_request("tool_choice: must be auto, none, required, {type: function, name} or a built-in tool "
                      "({type: mcp, server_label, name?}, {type: file_search}…)", "tool_choice")


def response_format(text_format: dict[str, Any]) -> dict[str, Any] | None:
    """Flat `text.format` → the engine's chat `response_format`."""
    kind = text_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(text_format.get("schema"), dict) or not text_format.get("name"):
            raise bad_request("text.format: json_schema needs 'name' and 'schema' (flat, not nested)", "text.format")
        schema = {k: text_format[k] for k in ("name", "schema", "strict", "description") if k in text_format}
        return {"type": "json_schema", "json_schema": schema}
    raise bad_request(f"text.format: unknown type {kind!r}", "text.format.type")
