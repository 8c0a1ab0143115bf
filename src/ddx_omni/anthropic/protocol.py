"""Wire schemas of the Anthropic Messages API: the request, the message, usage, token count, model list.

Requests are lenient (`extra="allow"`, blocks as plain dicts): Claude Code and the SDKs send fields and block
types newer than this server (cache_control, citations, tool_reference, server tools…), and refusing them would
stop the client; what cannot be honoured is skipped (see convert.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class InputMessage(_Lenient):
    role: Literal["user", "assistant", "system"]  # `system` inside messages: SDK 2.x types it, folded into system
    content: str | list[dict[str, Any]]


class Tool(_Lenient):
    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None  # server tools (web_search, bash, …) have a `type` and none
    type: str | None = None


class ToolChoice(_Lenient):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class ThinkingConfig(_Lenient):
    type: str  # enabled | disabled | adaptive | between_tools
    budget_tokens: int | None = None


class CountTokensRequest(_Lenient):
    model: str
    messages: list[InputMessage]
    system: str | list[dict[str, Any]] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=2)  # SDK 0.x kwargs; 2.x clients send them via extra_body
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    metadata: dict[str, Any] | None = None
    stream: bool = False

    @field_validator("stop_sequences", mode="before")
    @classmethod
    def _no_empty(cls, value: Any) -> Any:
        return [s for s in value if s] if isinstance(value, list) else value


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0  # prompt tokens the engine's KV cache already held
    service_tier: str = "standard"


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[dict[str, Any]]  # text{text} | tool_use{id, name, input} | thinking{thinking, signature}
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"] | None
    stop_sequence: str | None
    usage: Usage


class TokenCount(BaseModel):
    input_tokens: int


class ModelInfo(BaseModel):
    id: str
    type: Literal["model"] = "model"
    display_name: str
    created_at: str  # RFC 3339
    max_input_tokens: int | None = None


class ModelPage(BaseModel):
    data: list[ModelInfo]
    has_more: bool
    first_id: str | None
    last_id: str | None
