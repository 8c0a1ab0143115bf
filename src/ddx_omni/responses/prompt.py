"""A turn's first prompt through the one prompt pipeline (llm/prompt.py), and fitting a turn's items into the model's
context window: all of them, or (truncation=auto) the newest that fit."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import OPENAI_TWINS, ApiError
from ..llm.engine import ChatEngine, ChatParams
from ..llm.prompt import prepare_prompt
from ..tools.base import ReplayedCall
from . import items as it
from .schemas import bad_request


@dataclass
class PromptFitter:
    """Builds `params.messages` from items, dropping the oldest ones when allowed and needed."""

    engine: ChatEngine
    instructions: str | None
    truncation: str | None
    reserve: int  # tokens kept free for the output
    replays: dict[str, ReplayedCall] = field(default_factory=dict)
    engine_s: float = 0.0  # time spent counting tokens in the engine
    images: Callable[[ChatParams], Awaitable[None]] | None = None  # loads the images of params.messages

    @property
    def budget(self) -> int:
        return self.engine.context_window - self.reserve

    async def _tokens(self, params: ChatParams, items: list[dict[str, Any]]) -> int:
        params.messages = it.to_chat_messages(items, self.instructions, self.replays)
        if self.images is not None:
            await self.images(params)
        started = time.perf_counter()
        try:
            return await self.engine.count_prompt_tokens(params)
        finally:
            self.engine_s += time.perf_counter() - started

    async def fit(self, params: ChatParams, items: list[dict[str, Any]], keep: int = 0) -> tuple[int, int]:
        """Set params.messages to what fits → (prompt tokens, index of the first item kept). The last `keep`
        items (this turn's own output) are never dropped. Overflow with truncation=disabled is a 400, as OpenAI
        answers."""
        count = await self._tokens(params, items)
        if count <= self.budget:
            return count, 0
        if self.truncation != "auto":
            raise bad_request(f"The input ({count} tokens) exceeds the context window of {self.engine.model_id} "
                              f"({self.engine.context_window} tokens, {self.budget} left for input). Shorten it or "
                              f"set truncation='auto'.", "input", code="context_length_exceeded")
        # binary search for the fewest oldest items to drop: O(log n) token counts, not O(n)
        low, high = 1, len(items) - 1 - keep
        best: int | None = None
        while low <= high:
            mid = (low + high) // 2
            if await self._tokens(params, items[mid:]) <= self.budget:
                best, high = mid, mid - 1
            else:
                low = mid + 1
        if best is not None:
            while not it.droppable_prefix_ok(items, best) and best < len(items) - 1 - keep:
                best += 1
            count = await self._tokens(params, items[best:])
            if count <= self.budget:
                return count, best
        raise bad_request(f"Even the newest input item alone exceeds the context window of {self.engine.model_id} "
                          f"({self.budget} tokens left for input).", "input", code="context_length_exceeded")


# the chat surface's names for what a Responses request calls otherwise
_PARAMS = {"response_format": "text.format", "messages": "input", "max_tokens": "max_output_tokens"}


async def prepare_turn_prompt(fitter: PromptFitter, params: ChatParams, items: list[dict[str, Any]],
                              default_max_tokens: int, more_tools: bool) -> tuple[int, int]:
    """Validate, fit, render and tokenize the first generation's prompt before the turn starts → (prompt tokens,
    index of the first item kept). A bad request is a 400 (OpenAI's shape), never a failed response.
    `more_tools`: built-in tools are bound, whose functions are only known once the turn starts."""
    first = 0

    async def count(fitted: ChatParams) -> int:
        nonlocal first
        tokens, first = await fitter.fit(fitted, items)
        return tokens

    try:
        prompt = await prepare_prompt(fitter.engine, params, default_max_tokens, count=count, more_tools=more_tools,
                                      param="input")
    except ApiError as exc:
        if exc.code not in OPENAI_TWINS:  # the chat surface's 422s are Responses' 400s; anything else as it is
            raise
        raise bad_request(exc.message, _PARAMS.get(exc.param or "", exc.param), code=OPENAI_TWINS[exc.code]) from None
    return prompt, first
