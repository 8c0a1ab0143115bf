"""Upstream engine: generation on remote OpenAI-compatible servers (another ddx-omni, mlx_lm.server, vLLM…).

A registry entry with `url`s is answered by those servers through the same ChatEngine protocol as a local model,
so chat, Responses and every later protocol stream through them with the gateway's auth, metrics and errors.
Several URLs are balanced by least outstanding requests; one that fails before its first byte is skipped for
`[llm].upstream_breaker_s` and the request tries the next (after the first byte, a failure is the request's).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..core.errors import ApiError, LlmError, ModelUnavailable
from ..core.settings import LlmSettings, ModelEntry
from .engine import ChatDelta, ChatParams, ToolCall, Usage

log = logging.getLogger("ddx_omni.llm.upstream")
DEFAULT_CONTEXT_WINDOW = 32768
CHARS_PER_TOKEN = 4  # no tokenizer here: the window check estimates, the upstream's usage is the real count
# ChatParams field → request field; names outside OpenAI's (top_k, min_p, repetition_penalty) are the ones
# mlx_lm.server and vLLM read
_PASSED = {"tools": "tools", "tool_choice": "tool_choice", "temperature": "temperature", "top_p": "top_p",
           "top_k": "top_k", "min_p": "min_p", "seed": "seed", "presence_penalty": "presence_penalty",
           "frequency_penalty": "frequency_penalty", "repetition_penalty": "repetition_penalty",
           "logit_bias": "logit_bias", "response_format": "response_format"}


@dataclass
class Target:
    """One upstream URL and what the balancer knows of it."""

    url: str
    outstanding: int = 0
    down_until: float = 0.0
    last_error: str | None = None

    @property
    def up(self) -> bool:
        return time.monotonic() >= self.down_until

    def health(self) -> dict[str, Any]:
        return {"url": self.url, "state": "up" if self.up else "down", "outstanding": self.outstanding,
                "last_error": self.last_error}


@dataclass
class _Calls:
    """Tool-call fragments of a stream, joined by index (OpenAI streams a call's arguments in pieces)."""

    parts: dict[int, dict[str, str]] = field(default_factory=dict)

    def add(self, fragments: list[dict[str, Any]]) -> None:
        for fragment in fragments:
            call = self.parts.setdefault(fragment.get("index", 0), {"id": "", "name": "", "arguments": ""})
            function = fragment.get("function") or {}
            call["id"] = fragment.get("id") or call["id"]
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""

    def whole(self) -> list[ToolCall]:
        return [ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"] or "{}")
                for _, c in sorted(self.parts.items())]


def request_body(params: ChatParams, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": params.messages, "stream": True,
                            "stream_options": {"include_usage": True}}
    body.update({wire: getattr(params, name) for name, wire in _PASSED.items() if getattr(params, name) is not None})
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.stop:
        body["stop"] = params.stop
    if params.logprobs:
        body.update(logprobs=True, top_logprobs=params.top_logprobs)
    return body


class UpstreamEngine:
    def __init__(self, entry: ModelEntry, settings: LlmSettings, client: httpx.AsyncClient) -> None:
        self.model_id = entry.id
        self.context_window = entry.context_window or DEFAULT_CONTEXT_WINDOW
        self.remote_model = entry.upstream_model or entry.id
        self.targets = [Target(url.rstrip("/")) for url in entry.url]
        self.breaker_s = settings.upstream_breaker_s
        self.client = client
        key = entry.api_key.get_secret_value() if entry.api_key else None
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def count_prompt_tokens(self, params: ChatParams) -> int:
        text = json.dumps(params.messages) + (json.dumps(params.tools) if params.tools else "")
        return len(text) // CHARS_PER_TOKEN

    def health(self) -> list[dict[str, Any]]:
        return [target.health() for target in self.targets]

    def _order(self) -> list[Target]:
        """Healthy targets by fewest outstanding requests, then the broken ones (soonest back first)."""
        up = sorted((t for t in self.targets if t.up), key=lambda t: t.outstanding)
        return up + sorted((t for t in self.targets if not t.up), key=lambda t: t.down_until)

    async def stream(self, params: ChatParams) -> AsyncIterator[ChatDelta]:
        body = request_body(params, self.remote_model)
        failures = []
        for target in self._order():
            target.outstanding += 1
            started = False
            try:
                async with self.client.stream("POST", f"{target.url}/chat/completions", json=body,
                                              headers=self._headers) as reply:
                    await _check_status(reply)
                    lines = reply.aiter_lines()
                    first = await _first_data(lines)  # a failure up to here can go to the next target
                    target.last_error, started = None, True
                    async for delta in _deltas(first, lines):
                        yield delta
                    return
            except (httpx.TransportError, _Retryable) as exc:
                if started:  # text has reached the client: retrying elsewhere would repeat it
                    raise LlmError(f"The upstream server failed mid-answer: {_describe(exc)}") from None
                self._trip(target, exc)
                failures.append(f"{target.url}: {_describe(exc)}")
            finally:
                target.outstanding -= 1
        raise ModelUnavailable(f"No upstream server for {self.model_id} answered", "; ".join(failures))

    def _trip(self, target: Target, exc: Exception) -> None:
        target.down_until = time.monotonic() + self.breaker_s
        target.last_error = _describe(exc)
        log.warning("upstream %s failed (%s): skipped for %gs", target.url, target.last_error, self.breaker_s)


class _Retryable(Exception):
    """The upstream answered, but unusably (5xx, 429, no data): another upstream may do better."""


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


async def _check_status(reply: httpx.Response) -> None:
    if reply.status_code < 400:
        return
    raw = await reply.aread()
    if reply.status_code >= 500 or reply.status_code == 429:
        raise _Retryable(f"HTTP {reply.status_code}")
    try:
        error = json.loads(raw)
        message = (error.get("error") or {}).get("message") or error.get("message") or raw.decode()[:300]
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")[:300]
    raise ApiError(f"The upstream server refused the request: {message}", status=reply.status_code,
                   code="upstream_refused")


async def _first_data(lines: AsyncIterator[str]) -> dict[str, Any]:
    async for line in lines:
        chunk = _parse(line)
        if chunk is not None:
            return chunk
    raise _Retryable("the stream ended before any data")


def _parse(line: str) -> dict[str, Any] | None:
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        chunk = json.loads(data)
    except ValueError:
        raise LlmError("The upstream server sent a malformed stream chunk") from None
    if isinstance(chunk, dict) and "error" in chunk:
        error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
        raise LlmError(f"The upstream server failed mid-stream: {error.get('message', 'unknown error')}")
    return chunk


async def _deltas(first: dict[str, Any], lines: AsyncIterator[str]) -> AsyncIterator[ChatDelta]:
    """Chunks → ChatDeltas: text and reasoning as they come; tool calls whole, with the finish reason."""
    calls, finish, usage = _Calls(), None, None
    chunk: dict[str, Any] | None = first
    while True:
        if chunk is not None:
            usage = _usage(chunk.get("usage")) or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                calls.add(delta.get("tool_calls") or [])
                finish = choice.get("finish_reason") or finish
                text, reasoning = delta.get("content") or "", delta.get("reasoning_content") or ""
                logprobs = (choice.get("logprobs") or {}).get("content")
                if text or reasoning or logprobs:
                    yield ChatDelta(text=text, reasoning=reasoning, logprobs=logprobs)
        line = await anext(lines, None)
        if line is None:
            break
        chunk = _parse(line)
    whole = calls.whole()
    yield ChatDelta(tool_calls=whole, finish_reason=finish or ("tool_calls" if whole else "stop"),
                    usage=usage or Usage(0, 0))


def _usage(raw: dict[str, Any] | None) -> Usage | None:
    if not raw:
        return None
    cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return Usage(prompt_tokens=raw.get("prompt_tokens", 0), completion_tokens=raw.get("completion_tokens", 0),
                 cached_tokens=cached)
