"""The one prompt pipeline: every surface (chat, completions, Anthropic Messages, Responses) validates, renders and
tokenizes a request here, once, before any generation starts.

`prepare_prompt` checks what needs no model (tool_choice against the request's tools, the response_format
schema, logprobs options, logit_bias ids), then asks the engine to count the prompt — which, on a local model,
renders the chat template, tokenizes it, checks what needs the tokenizer (logit_bias ids within the vocabulary, a
tool parser for a forced call) and keeps the tokens on the params (`Rendered`) so that generation starts from them
instead of rendering again — and finally fits `max_tokens` into the context window. A bad request is therefore an
HTTP error on every surface, never a failed generation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..core.errors import ContextTooLong, RequestInvalid
from .engine import ChatEngine, ChatParams, Rendered
from .structured import grammar_for

Counter = Callable[[ChatParams], Awaitable[int]]  # how a surface counts (Responses: its truncation fitter)


def check_tool_choice(params: ChatParams, more_tools: bool = False) -> None:
    """tool_choice must be one of the chat forms, and a forced one must have tools — a named one, a tool the request
    has. `more_tools`: tools only known once generation starts (Responses' built-in ones) may still satisfy it."""
    choice, names = params.tool_choice, {(t.get("function") or {}).get("name") for t in params.tools or []}
    if choice is None or choice in ("auto", "none"):
        return
    if not names and not more_tools:
        raise RequestInvalid("tool_choice needs `tools`", param="tool_choice")
    if choice == "required":
        return
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if name not in names and not more_tools:
            raise RequestInvalid(f"tool_choice names '{name}', which is not in `tools`", param="tool_choice")
        return
    if more_tools and isinstance(choice, dict):  # a built-in form ({type: mcp, …}): the turn resolves it
        return
    raise RequestInvalid("tool_choice must be auto, none, required or {type: function, function: {name}}",
                         param="tool_choice")


def check_request(params: ChatParams, more_tools: bool = False) -> None:
    """What can be checked without the model (the mock engine gets exactly these checks)."""
    check_tool_choice(params, more_tools)
    grammar_for(params.response_format)  # an unusable schema is a RequestInvalid naming response_format
    if params.top_logprobs and not params.logprobs:
        raise RequestInvalid("top_logprobs needs logprobs: true", param="top_logprobs")
    if any(token < 0 for token in params.logit_bias or {}):
        raise RequestInvalid("logit_bias keys must be token ids (0 or more)", param="logit_bias")


def fit_max_tokens(prompt: int, window: int, max_tokens: int | None, default_max_tokens: int,
                   param: str = "messages") -> int:
    """max_tokens (or the default, clamped to the room left) checked against the context window."""
    room = window - prompt
    if max_tokens is None:
        max_tokens = min(default_max_tokens, room)
    if room < 1 or max_tokens > room:
        raise ContextTooLong(f"{prompt} prompt tokens + max_tokens {max_tokens} exceed the model's context window "
                             f"of {window}", {"prompt_tokens": prompt, "max_tokens": max_tokens,
                                              "context_window": window}, param=param)
    return max_tokens


async def prepare_prompt(engine: ChatEngine, params: ChatParams, default_max_tokens: int, *,
                         count: Counter | None = None, more_tools: bool = False, param: str = "messages",
                         fit: Callable[[int, int, int | None], int] | None = None) -> int:
    """Validate, render and tokenize `params` once, and set `params.max_tokens` → the prompt's token count.
    `fit` replaces the window check (Anthropic clamps max_tokens rather than refusing it)."""
    check_request(params, more_tools)
    prompt = await (count or engine.count_prompt_tokens)(params)
    if fit is not None:
        params.max_tokens = fit(prompt, engine.context_window, params.max_tokens)
    else:
        params.max_tokens = fit_max_tokens(prompt, engine.context_window, params.max_tokens, default_max_tokens,
                                           param)
    return prompt


def rendered_tokens(params: ChatParams) -> list[int] | None:
    """The tokens the pipeline rendered for exactly these params (None when there are none, or they are stale)."""
    rendered = params.rendered
    return rendered.tokens if rendered is not None and rendered.matches(params) else None


def keep_rendered(params: ChatParams, tokens: list[int]) -> None:
    params.rendered = Rendered.of(params, tokens)
