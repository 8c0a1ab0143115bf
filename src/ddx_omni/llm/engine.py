"""The chat engine protocol: what the chat and Responses routers call, whatever runs the model."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import sys
from collections.abc import AsyncIterator, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.errors import ApiError, LlmError


@dataclass
class ChatParams:
    """One generation request, independent of the wire format it came in."""

    messages: list[dict[str, Any]]  # OpenAI chat messages: role, content (str | text parts), tool_calls, tool_call_id
    tools: list[dict[str, Any]] | None = None  # OpenAI nested tools: {type: function, function: {name, parameters}}
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[int, float] | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: dict[str, Any] | None = None  # {type: text | json_object | json_schema, json_schema: {...}}
    # Legacy completions: raw text (or token ids) that the engine continues as-is, with no chat template;
    # `messages` is then ignored.
    prompt: str | list[int] | None = None
    # Decoded images (PIL, RGB), one per image part of `messages` in order; filled by llm/images.py's ImageInput
    # for a multimodal model, empty otherwise.
    images: list[Any] = field(default_factory=list)
    # The prompt as llm/prompt.py's pipeline rendered it, so that generation does not render it again.
    rendered: Rendered | None = field(default=None, repr=False)


@dataclass(eq=False)
class Rendered:
    """Prompt tokens and what they were rendered from. It holds the very objects (not copies or ids), so it goes
    stale as soon as a caller puts other messages, tools or tool_choice on the params."""

    tokens: list[int]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    prompt: str | list[int] | None

    @classmethod
    def of(cls, params: ChatParams, tokens: list[int]) -> Rendered:
        return cls(tokens, params.messages, params.tools, params.tool_choice, params.prompt)

    def matches(self, params: ChatParams) -> bool:
        return (self.messages is params.messages and self.tools is params.tools and self.prompt is params.prompt
                and self.tool_choice == params.tool_choice)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChatDelta:
    """A piece of a generation. Text comes in order; tool calls arrive whole; the last delta has
    `finish_reason` ("stop" | "length" | "tool_calls") and `usage`."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None  # OpenAI `logprobs.content` entries for this piece
    finish_reason: str | None = None
    usage: Usage | None = None
    reasoning: str = ""  # a thinking model's reasoning (between its think markers), kept out of `text`
    stop_sequence: str | None = None  # on the last delta: the stop string that ended the generation, if one did


class ChatEngine(Protocol):
    """A loaded model. `stream` runs generation off the event loop and stops when the consumer closes it."""

    model_id: str
    context_window: int

    async def count_prompt_tokens(self, params: ChatParams) -> int: ...

    def stream(self, params: ChatParams) -> AsyncIterator[ChatDelta]: ...


# -- closing a local (MLX) engine: the text and the vision engine share it --------------------------------------


async def drain_and_release(jobs: Collection[Any], idle: asyncio.Event, executor: ThreadPoolExecutor,
                            release: Callable[[], None], drain_s: float) -> None:
    """`close()` of an engine that runs on its own thread (the caller has refused new requests already): let the
    running requests finish for `drain_s`, fail the rest as unloaded, then free the model on that thread."""
    try:
        await asyncio.wait_for(idle.wait(), timeout=drain_s)
    except TimeoutError:
        for job in list(jobs):
            job.unloaded = True
            job.cancel.set()
    await asyncio.get_running_loop().run_in_executor(executor, release)
    executor.shutdown(wait=False)


def generation_failure(exc: BaseException) -> ApiError:
    """What a request is told when its generation raised: an ApiError as it is, anything else as `llm_error`
    (its type and message, never a traceback)."""
    return exc if isinstance(exc, ApiError) else LlmError("Generation failed", f"{type(exc).__name__}: {exc}")


def free_memory() -> None:
    """After a model's references are dropped (on its thread): collect it, empty MLX's buffer pool, trim the heap."""
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()  # MLX keeps freed buffers in a pool; give them back before the next model loads
    _trim_malloc()


def _trim_malloc() -> None:
    """Hand freed heap memory back to the system. On the CPU, MLX's buffers come from malloc; once glibc has raised
    its mmap threshold (it does after large frees) they live in heap arenas, which free() alone does not shrink,
    so without this a swapped-out model's weights stay in the process's RSS."""
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim): nothing to do
        pass
