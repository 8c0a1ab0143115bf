"""What the Responses and Conversations routes return, as pydantic protocol models: the OpenAPI document's 200
schemas, and what tests validate real answers against.

The routes build these objects as dicts (schemas.py, items.py, the tools) and send them serialized once;
these models describe that output (field names and types as in the openai SDK's `Response`, `ResponseItem`,
`Conversation`), not a second code path. Objects accept fields they do not name (`extra="allow"`): agents'
items are stored as sent, and OpenAI adds fields often.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ItemStatus = Literal["in_progress", "completed", "incomplete", "failed", "searching", "interpreting", "calling",
                     "cancelled"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- content parts ------------------------------------------------------------------------------------------
class OutputText(_Wire):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] = Field(description="url_citation, file_citation, container_file_citation")
    logprobs: list[dict[str, Any]] = []


class InputText(_Wire):
    type: Literal["input_text"]
    text: str


class InputImage(_Wire):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] = "auto"


ContentPart = Annotated[OutputText | InputText | InputImage, Field(discriminator="type")]


class ReasoningText(_Wire):
    type: Literal["reasoning_text"]
    text: str


# ---- items --------------------------------------------------------------------------------------------------
class MessageItem(_Wire):
    id: str
    type: Literal["message"]
    role: Literal["user", "system", "developer", "assistant"]
    status: ItemStatus
    content: list[ContentPart]


class FunctionCallItem(_Wire):
    id: str
    type: Literal["function_call"]
    status: ItemStatus
    call_id: str
    name: str
    arguments: str = Field(description="the arguments as a JSON string")


class FunctionCallOutputItem(_Wire):
    id: str
    type: Literal["function_call_output"]
    status: ItemStatus
    call_id: str
    output: str


class ReasoningItem(_Wire):
    id: str
    type: Literal["reasoning"]
    status: ItemStatus | None = None
    summary: list[dict[str, Any]] = []
    content: list[ReasoningText] | None = None


class McpTool(_Wire):
    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    annotations: dict[str, Any] | None = None


class McpListToolsItem(_Wire):
    id: str
    type: Literal["mcp_list_tools"]
    server_label: str
    tools: list[McpTool]
    error: str | None = None


class McpCallItem(_Wire):
    id: str
    type: Literal["mcp_call"]
    server_label: str
    name: str
    arguments: str
    output: str | None = None
    error: str | dict[str, Any] | None = Field(None, description="mcp_protocol_error, mcp_tool_execution_error "
                                                                 "or http_error object")
    status: ItemStatus | None = None
    approval_request_id: str | None = None


class McpApprovalRequestItem(_Wire):
    id: str
    type: Literal["mcp_approval_request"]
    server_label: str
    name: str
    arguments: str


class McpApprovalResponseItem(_Wire):
    id: str
    type: Literal["mcp_approval_response"]
    approval_request_id: str
    approve: bool
    reason: str | None = None


class FileSearchCallItem(_Wire):
    id: str
    type: Literal["file_search_call"]
    status: ItemStatus
    queries: list[str]
    results: list[dict[str, Any]] | None = None


class WebSearchCallItem(_Wire):
    id: str
    type: Literal["web_search_call"]
    status: ItemStatus
    action: dict[str, Any] = Field(description="{type: search, query, sources?} | {type: open_page, url} | "
                                               "{type: find_in_page, url, pattern}")


class CodeInterpreterCallItem(_Wire):
    id: str
    type: Literal["code_interpreter_call"]
    status: ItemStatus
    code: str | None
    container_id: str
    outputs: list[dict[str, Any]] | None = Field(None, description="{type: logs, logs} | {type: image, url}")


class AgentItem(_Wire):
    """An item an agent (Codex) sent in its history that this server stores as sent: compaction,
    local_shell_call, custom_tool_call…"""

    id: str
    type: str


Item = (MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem | McpListToolsItem | McpCallItem
        | McpApprovalRequestItem | McpApprovalResponseItem | FileSearchCallItem | WebSearchCallItem
        | CodeInterpreterCallItem | AgentItem)


# ---- the response -------------------------------------------------------------------------------------------
class InputTokensDetails(_Wire):
    cached_tokens: int
    cache_write_tokens: int = 0


class OutputTokensDetails(_Wire):
    reasoning_tokens: int


class ResponseUsage(_Wire):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(_Wire):
    code: str
    message: str


class IncompleteDetails(_Wire):
    reason: str


class ConversationRefOut(_Wire):
    id: str


class Response(_Wire):
    """A response: as announced, running, or finished (`status`)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
    background: bool
    completed_at: int | None = None
    conversation: ConversationRefOut | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    metadata: dict[str, str]
    model: str
    output: list[Item]
    parallel_tool_calls: bool
    previous_response_id: str | None = None
    prompt_cache_key: str | None = None
    reasoning: dict[str, Any] | None = None
    safety_identifier: str | None = None
    service_tier: str
    store: bool
    temperature: float
    text: dict[str, Any]
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_logprobs: int
    top_p: float
    presence_penalty: float
    frequency_penalty: float
    truncation: Literal["auto", "disabled"]
    usage: ResponseUsage | None = None
    user: str | None = None


class InputTokens(_Wire):
    object: Literal["response.input_tokens"]
    input_tokens: int


class ResponseDeleted(_Wire):
    id: str
    object: Literal["response.deleted"]
    deleted: bool


class ItemList(_Wire):
    """A page of items (input items, a conversation's items, the items just added)."""

    object: Literal["list"]
    data: list[Item]
    first_id: str | None
    last_id: str | None
    has_more: bool


# ---- conversations ------------------------------------------------------------------------------------------
class Conversation(_Wire):
    id: str
    object: Literal["conversation"]
    created_at: int
    metadata: dict[str, str]


class ConversationDeleted(_Wire):
    id: str
    object: Literal["conversation.deleted"]
    deleted: bool
