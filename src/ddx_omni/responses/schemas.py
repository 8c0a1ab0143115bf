"""Wire shapes of the Responses and Conversations APIs: request models, ids, and the object builders.

Request models accept unknown fields (clients send settings this server has no use for); the builders emit
every field the openai SDK's `Response` type has, with the settings the strict Open Responses schema wants
non-null always filled in.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ApiError, api_error

METADATA_MAX_KEYS, METADATA_KEY_MAX, METADATA_VALUE_MAX = 16, 64, 512
CONVERSATION_ITEMS_MAX = 20


def new_id(prefix: str) -> str:
    """`resp_…`, `msg_…`, `fc_…`, `conv_…`: prefix + 32 hex digits, the first 12 a millisecond clock.

    Time-ordered like UUIDv7: a chain's rows (made one after another) sit side by side in every index, so
    walking it touches the same few pages however many unrelated, older rows the database holds; random ids
    would scatter it over the whole index."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> ApiError:
    """A request error; `invalid_request` (400, as OpenAI answers: the SDK's BadRequestError) unless a more
    specific code of core/errors.py's table is given."""
    return api_error(code, message, param)


def not_found(message: str, param: str | None = None) -> ApiError:
    return api_error("not_found", message, param)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ConversationRef(_Open):
    id: str


class TextConfig(_Open):
    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class CreateResponseRequest(_Open):
    """POST /v1/responses. Only what shapes the turn is typed; the rest is accepted and ignored."""

    model: str | None = Field(None, description="Model id; the served model when omitted")
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    store: bool | None = True
    stream: bool | None = False
    background: bool | None = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    max_output_tokens: int | None = Field(None, ge=1)
    max_tool_calls: int | None = Field(None, ge=1)
    text: TextConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None
    include: list[str] | None = None
    service_tier: str | None = None
    reasoning: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation


class CreateConversationRequest(_Open):
    items: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None


class UpdateConversationRequest(_Open):
    metadata: dict[str, Any] | None = None


class AddItemsRequest(_Open):
    items: list[dict[str, Any]]


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, str]:
    """≤ 16 keys, keys ≤ 64 characters, string values ≤ 512 characters; anything else is a 400."""
    if metadata is None:
        return {}
    if len(metadata) > METADATA_MAX_KEYS:
        raise bad_request(f"metadata: at most {METADATA_MAX_KEYS} keys are allowed, got {len(metadata)}", "metadata")
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_MAX:
            raise bad_request(f"metadata: key {key[:70]!r}… is longer than {METADATA_KEY_MAX} characters",
                              f"metadata.{key[:64]}")
        if not isinstance(value, str):
            raise bad_request(f"metadata: the value of {key!r} must be a string", f"metadata.{key}")
        if len(value) > METADATA_VALUE_MAX:
            raise bad_request(f"metadata: the value of {key!r} is longer than {METADATA_VALUE_MAX} characters",
                              f"metadata.{key}")
    return dict(metadata)


def text_config(text: TextConfig | None) -> dict[str, Any]:
    fmt = (text.format if text and text.format else None) or {"type": "text"}
    return {"format": fmt, "verbosity": (text.verbosity if text and text.verbosity else "medium")}


def usage_object(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(request: CreateResponseRequest, *, response_id: str, model: str, created_at: float,
                    status: str, tools: list[dict[str, Any]], metadata: dict[str, str],
                    conversation_id: str | None, default_temperature: float = 1.0) -> dict[str, Any]:
    """The response as first announced (no output yet); `finish_response` fills in the outcome."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at),
        "status": status,
        "background": bool(request.background),
        "completed_at": None,
        "conversation": {"id": conversation_id} if conversation_id else None,
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "metadata": metadata,
        "model": model,
        "output": [],
        "parallel_tool_calls": True if request.parallel_tool_calls is None else request.parallel_tool_calls,
        "previous_response_id": request.previous_response_id,
        "prompt": None,
        "prompt_cache_key": request.prompt_cache_key,
        "prompt_cache_retention": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": request.safety_identifier,
        "service_tier": "default",
        "store": True if request.store is None else request.store,
        "temperature": default_temperature if request.temperature is None else request.temperature,
        "text": text_config(request.text),
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
        "tools": tools,
        "top_logprobs": request.top_logprobs or 0,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "presence_penalty": request.presence_penalty or 0.0,
        "frequency_penalty": request.frequency_penalty or 0.0,
        "truncation": request.truncation or "disabled",
        "usage": None,
        "user": request.user,
        # in the SDK's type, for features this server does not have: present, and null
        "access_programs": None, "image": None, "input_transformations": None, "moderation": None,
        "prompt_cache_diagnostics": None, "prompt_cache_options": None, "tool_usage": None,
    }


def message_item(item_id: str, text: str = "", status: str = "in_progress",
                 parts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": parts if parts is not None else ([output_text_part(text)] if text else [])}


def reasoning_item(item_id: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "status": "in_progress", "summary": [],
            "content": [{"type": "reasoning_text", "text": ""}]}


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str,
                       status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def conversation_object(conversation_id: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {"id": conversation_id, "object": "conversation", "created_at": int(time.time()), "metadata": metadata}


def list_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}
