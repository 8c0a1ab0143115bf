"""Anthropic request → the engines' ChatParams (OpenAI-shaped messages and tools), and ids in Anthropic's style.

Images in a user turn go to the model as chat image parts (a text-only model answers them with a 400 that says
which models take images). What a local model cannot use otherwise is skipped with a visible marker or dropped:
images inside tool results and documents become "[image omitted]" / "[document omitted]", thinking blocks in
the history are dropped (the chat templates drop past reasoning too), server tools (`web_search`, `bash`, …
without `input_schema`) are not offered.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..core.errors import RequestInvalid
from ..llm.engine import ChatParams
from .protocol import CountTokensRequest, MessagesRequest, Tool, ToolChoice

_OMITTED = {"image": "[image omitted: this model reads text only]",
            "document": "[document omitted: this model reads text only]"}


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def tool_use_id(call_id: str) -> str:
    """Engine call ids (`call_…`) → Anthropic's `toolu_…`; ids already in that form are kept."""
    return call_id if call_id.startswith("toolu_") else f"toolu_{call_id.removeprefix('call_') or uuid.uuid4().hex}"


def _block_text(block: dict[str, Any]) -> str | None:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    return _OMITTED.get(str(kind))


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [_block_text(b) for b in content or [] if isinstance(b, dict)]
    return "\n".join(p for p in parts if p is not None)


def system_text(system: str | list[dict[str, Any]] | None, messages: list[Any]) -> str:
    """The top-level system prompt plus any `role: system` messages, in order."""
    parts = [_text_of(system)] if system else []
    parts += [_text_of(m.content) for m in messages if m.role == "system"]
    return "\n\n".join(p for p in parts if p)


def _tool_result(block: dict[str, Any]) -> dict[str, Any]:
    text = _text_of(block.get("content") or "")
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}


def _user_messages(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One user turn → tool messages for its tool_result blocks (first, as the API requires them), then the text."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    blocks = [b for b in content if isinstance(b, dict)]
    out = [_tool_result(b) for b in blocks if b.get("type") == "tool_result"]
    rest = [b for b in blocks if b.get("type") != "tool_result"]
    if any(b.get("type") == "image" for b in rest):  # the images go to the model (or get a 400 if it reads text only)
        parts = [image_part(b) if b.get("type") == "image" else {"type": "text", "text": t}
                 for b in rest if b.get("type") == "image" or (t := _block_text(b)) is not None]
        return [*out, {"role": "user", "content": parts}]
    texts = [t for b in rest if (t := _block_text(b)) is not None]
    if texts or not out:
        out.append({"role": "user", "content": "\n".join(texts)})
    return out


def image_part(block: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic image block → the chat image part llm/images.py loads (base64 → a data: URL)."""
    raw = block.get("source")
    source: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data') or ''}"
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "url":
        return {"type": "image_url", "image_url": {"url": str(source.get("url") or "")}}
    if kind == "file":
        return {"type": "image_file", "file_id": source.get("file_id")}
    raise RequestInvalid(f"image source type {kind!r} is not supported: use base64, url or file", param="messages")


def _assistant_message(content: str | list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    blocks = [b for b in content if isinstance(b, dict)]
    calls = [{"id": str(b.get("id", "")), "type": "function",
              "function": {"name": str(b.get("name", "")),
                           "arguments": json.dumps(b.get("input") or {}, ensure_ascii=False)}}
             for b in blocks if b.get("type") == "tool_use"]
    text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    return message


def chat_messages(req: CountTokensRequest) -> list[dict[str, Any]]:
    system = system_text(req.system, req.messages)
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in req.messages:
        if message.role == "user":
            out += _user_messages(message.content)
        elif message.role == "assistant":
            out.append(_assistant_message(message.content))
    return out


def chat_tools(tools: list[Tool] | None) -> list[dict[str, Any]] | None:
    """Client tools only: server tools run on Anthropic's side, which this server is not."""
    functions = [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                    "parameters": t.input_schema}}
                 for t in tools or [] if t.input_schema is not None]
    return functions or None


def chat_tool_choice(choice: ToolChoice | None, tools: list[dict[str, Any]] | None) -> str | dict[str, Any] | None:
    if choice is None or tools is None:
        return None
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name or ""}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def chat_params(req: CountTokensRequest) -> ChatParams:
    tools = chat_tools(req.tools)
    params = ChatParams(messages=chat_messages(req), tools=tools, tool_choice=chat_tool_choice(req.tool_choice, tools))
    if isinstance(req, MessagesRequest):
        params.max_tokens, params.stop = req.max_tokens, list(req.stop_sequences or [])
        params.temperature, params.top_p, params.top_k = req.temperature, req.top_p, req.top_k
    return params
