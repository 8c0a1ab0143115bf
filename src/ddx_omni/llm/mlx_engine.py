"""MLX engine: one loaded mlx-lm model, generating on its own worker thread and streaming to the event loop.

Every MLX call of an engine (load, generate, release) runs on ONE dedicated thread: MLX state is not safe to
share across threads. On it the scheduler (batching.py) decodes concurrent requests together in one batch, or
runs a request that cannot be batched on its own (`single_reason`). Tokens cross to the event loop through an
asyncio queue; each request has a cancel flag the worker checks after every token.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..core import metrics
from ..core.errors import ModelUnavailable, RequestInvalid
from .batching import Scheduler
from .compute import apply_dtype
from .engine import ChatDelta, ChatParams, Usage, drain_and_release, free_memory, generation_failure
from .output import OutputParser
from .prompt import fit_max_tokens, keep_rendered, rendered_tokens
from .prompt_cache import PromptCache
from .structured import CALL_LAYOUT, GrammarProcessor, forced_call_format, grammar_for, grammar_tokenizer

_END = object()
_FIRST_HANDOFF_S = 0.05  # longest a worker waits for the event loop to take the first token


class _Cancelled(Exception):
    """Raised inside mlx-lm's prefill when the request was cancelled."""


@dataclass(eq=False)  # identity hashing: jobs live in a set
class _Job:
    """One request's state, owned by the worker thread (nothing per-request lives on shared objects)."""

    params: ChatParams
    emit: Callable[[Any], None]
    started: float
    cancel: threading.Event = field(default_factory=threading.Event)
    unloaded: bool = False  # cancelled by a hot swap (fails the request) rather than by the client


@dataclass
class Prepared:
    """A request made ready for generation: its prompt tokens, budget, output parser, sampler and processors."""

    prompt: list[int]
    max_tokens: int
    parser: OutputParser
    sampler: Any
    processors: list[Any]


@dataclass
class Decoded:
    """What one decode produced, for the final delta, the metrics and the kept KV cache."""

    seen: list[int]  # prompt + every token handed out, in the order the KV cache holds them
    generated: int = 0
    finish: str = "stop"
    called: bool = False  # a tool call was emitted
    decode_s: float = 0.0


def _merge(first: ChatDelta, second: ChatDelta) -> ChatDelta:
    return ChatDelta(text=first.text + second.text, tool_calls=first.tool_calls + second.tool_calls,
                     reasoning=first.reasoning + second.reasoning,
                     logprobs=(first.logprobs or []) + (second.logprobs or []) or None,
                     finish_reason=second.finish_reason, usage=second.usage, stop_sequence=second.stop_sequence)


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _template_message(message: dict[str, Any]) -> dict[str, Any]:
    """OpenAI message → what chat templates expect: plain-text content, tool-call arguments as objects."""
    out = {k: v for k, v in message.items() if v is not None}
    out["role"] = "system" if message.get("role") == "developer" else message.get("role")
    out["content"] = _text_of(message.get("content"))
    calls = []
    for call in message.get("tool_calls") or []:
        function = dict(call.get("function") or {})
        try:
            function["arguments"] = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            pass  # leave malformed arguments as text: the template prints them as given
        calls.append({**call, "function": function})
    if calls:
        out["tool_calls"] = calls
    return out


def forced_prefix(params: ChatParams, tool_start: str | None, parser_type: str | None) -> str:  # noqa: ARG001
    """Text appended after the generation prompt so the model must call a tool (tool_choice required/named).
    With JSON tool calls the call itself is then constrained by `forced_call_format` (name and arguments
    valid for the tool's schema); other call syntaxes only get the opening tag (`parser_type` is kept for
    callers that pass it)."""
    choice = params.tool_choice
    if not params.tools or tool_start is None or choice in (None, "auto", "none"):
        return ""
    return f"{tool_start}\n"


@dataclass
class EngineOptions:
    """How an engine runs: from `[llm]` (defaults are the settings' defaults)."""

    prefill_step_size: int = 2048
    default_temperature: float = 1.0
    default_max_tokens: int = 512
    max_batch_size: int = 8
    prompt_cache_bytes: int = 1 << 30
    cpu_dtype: str = "auto"


class MlxEngine:
    """A loaded model. Build it with `await MlxEngine.load(...)`; release it with `await close()`."""

    def __init__(self, model_id: str, executor: ThreadPoolExecutor, model: Any, tokenizer: Any,
                 context_window: int, options: EngineOptions, compute: dict[str, Any] | None = None) -> None:
        self.model_id = model_id
        self.context_window = context_window
        self.compute = compute or {}
        self.options = options
        self._executor = executor
        self._model = model
        self._tokenizer = tokenizer
        self._jobs: set[_Job] = set()
        self.prompt_cache = PromptCache(model, options.prompt_cache_bytes)  # only the worker thread touches it
        self._grammar_tokenizer: Any = None  # llguidance's tokenizer, built on the first structured request
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_used = time.monotonic()
        config = getattr(tokenizer, "init_kwargs", {}) or {}
        self._parser_type = config.get("tool_parser_type")
        self._think = (tokenizer.think_start, tokenizer.think_end) if tokenizer.has_thinking else None
        self.scheduler = Scheduler(self, executor, options.max_batch_size if _batchable_model(model) else 1)

    @classmethod
    async def load(cls, model_id: str, path: str, *, context_window: int | None = None,
                   options: EngineOptions | None = None) -> MlxEngine:
        options = options or EngineOptions()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mlx-{model_id[-24:]}")
        start = time.perf_counter()
        try:
            model, tokenizer, config = await asyncio.get_running_loop().run_in_executor(executor, _load, path)
            compute = await asyncio.get_running_loop().run_in_executor(executor, apply_dtype, model,
                                                                       options.cpu_dtype)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        metrics.LLM_LOAD_SECONDS.labels(model_id).observe(time.perf_counter() - start)
        window = context_window or config.get("max_position_embeddings") or 4096
        return cls(model_id, executor, model, tokenizer, int(window), options, compute)

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    # -- prompt ---------------------------------------------------------------------------------------------

    def _prompt_tokens(self, params: ChatParams) -> list[int]:
        """The prompt's tokens: the ones the prompt pipeline rendered for these params, else rendered now."""
        tokens = rendered_tokens(params)
        if tokens is None:
            tokens = self._render(params)
            keep_rendered(params, tokens)
        return tokens

    def _render(self, params: ChatParams) -> list[int]:
        tokenizer = self._tokenizer
        if params.prompt is not None:  # legacy completions: the text as given, no template
            if isinstance(params.prompt, str):
                return list(tokenizer.encode(params.prompt))
            if any(not 0 <= t < len(tokenizer) for t in params.prompt):
                raise RequestInvalid(f"prompt has a token id outside the vocabulary (0..{len(tokenizer) - 1})",
                                     param="prompt")
            return list(params.prompt)
        tools = params.tools if params.tools and params.tool_choice != "none" else None
        messages = [_template_message(m) for m in params.messages]
        metrics.LLM_PROMPT_RENDERS.labels(self.model_id).inc()
        try:
            text = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja raises on conversations its template refuses (e.g. role order)
            raise RequestInvalid(f"The model's chat template rejected the messages: {exc}", param="messages") from None
        text += forced_prefix(params, tokenizer.tool_call_start, self._parser_type)
        return list(tokenizer.encode(text, add_special_tokens=False))

    def validate(self, params: ChatParams) -> None:
        """What needs this model's tokenizer: logit_bias ids in its vocabulary, a tool parser for a forced call."""
        tokenizer = self._tokenizer
        if params.tools and params.tool_choice not in (None, "auto", "none") and tokenizer.tool_parser is None:
            raise RequestInvalid(f"Model {self.model_id} has no tool-call parser, so tool_choice "
                                 f"{params.tool_choice!r} cannot be enforced", param="tool_choice")
        vocab = len(tokenizer)
        if any(not 0 <= t < max(vocab, 1) for t in params.logit_bias or {}):
            raise RequestInvalid(f"logit_bias names a token id outside the vocabulary (0..{vocab - 1})",
                                 param="logit_bias")

    def _checked_prompt(self, params: ChatParams) -> list[int]:
        self.validate(params)
        return self._prompt_tokens(params)

    async def count_prompt_tokens(self, params: ChatParams) -> int:
        # Tokenizing is thread-safe and must not wait behind a generation on the model thread. The tokens stay on
        # `params`, so the generation that follows starts from them.
        return len(await asyncio.to_thread(self._checked_prompt, params))

    # -- generation -----------------------------------------------------------------------------------------

    async def stream(self, params: ChatParams) -> AsyncIterator[ChatDelta]:
        if self._closing:
            raise ModelUnavailable(f"Model {self.model_id} is being unloaded", "retry the request")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        first = threading.Event()  # set once the event loop holds the first item

        def put(item: Any) -> None:
            queue.put_nowait(item)
            first.set()

        def emit(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(put, item)
            except RuntimeError:  # the loop has closed (server shutting down): nobody is listening
                return
            # The first token waits (GIL released) until the loop has it: right after it, mlx-lm calls
            # mx.clear_cache(), which frees the prompt's buffers while holding the GIL (~45 ms on a 0.6B float32
            # model), and uvloop's wakeup does not release the GIL, so the token would reach the client that much
            # later. The next token is already being computed meanwhile; the wait is bounded all the same.
            if not first.is_set():
                first.wait(_FIRST_HANDOFF_S)

        job = _Job(params=params, emit=emit, started=time.perf_counter())
        self._jobs.add(job)
        self._idle.clear()
        self.last_used = time.monotonic()
        self.scheduler.submit(job)
        try:
            async for delta in _drain(queue):
                yield delta
        finally:
            job.cancel.set()  # a consumer that went away stops the worker at its next token
            self._jobs.discard(job)
            self.last_used = time.monotonic()
            if not self._jobs:
                self._idle.set()

    def single_reason(self, params: ChatParams) -> str | None:
        """Why a request must run alone rather than in the batch (None: it can be batched)."""
        if params.seed is not None:
            # MLX draws from one process-wide generator: in a batch, the other requests' draws would interleave
            # with this one's, so its seed could not reproduce its output.
            return "seed"
        return None

    def run_single(self, job: _Job) -> None:
        """The request alone on the model (worker thread): mlx-lm's stream_generate."""
        try:
            if job.unloaded:
                raise _unloaded(self.model_id)
            if not job.cancel.is_set():
                self._generate(job)
        except Exception as exc:  # surfaced to the request; never kills the worker thread
            self.fail(job, exc)
        finally:
            job.emit(_END)

    def fail(self, job: _Job, exc: BaseException) -> None:
        job.emit(generation_failure(exc))

    def end(self, job: _Job) -> None:
        job.emit(_END)

    def unloaded_error(self) -> ModelUnavailable:
        return _unloaded(self.model_id)

    def _sampling(self, params: ChatParams) -> tuple[Any, list[Any]]:
        """The request's sampler and logits processors (fresh objects: nothing is shared between requests)."""
        import mlx.core as mx
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        bias = params.logit_bias or {}
        if params.seed is not None:
            mx.random.seed(params.seed)  # the worker is the only thread drawing from MLX's generator
        temperature = self.options.default_temperature if params.temperature is None else params.temperature
        sampler = make_sampler(temp=temperature, top_p=params.top_p or 0.0, min_p=params.min_p or 0.0,
                               top_k=params.top_k or 0)
        processors = make_logits_processors(logit_bias=bias or None, repetition_penalty=params.repetition_penalty,
                                            presence_penalty=params.presence_penalty,
                                            frequency_penalty=params.frequency_penalty)
        forced = forced_call_format(params.tools, params.tool_choice) if self._parser_type == "json_tools" else None
        # a forced call is the whole output: its grammar replaces the answer's format, which applies to text
        grammar = grammar_for(forced, CALL_LAYOUT) if forced else grammar_for(params.response_format)
        if grammar is not None:  # last, so that no bias can bring back a token the grammar forbids
            if self._grammar_tokenizer is None:
                self._grammar_tokenizer = grammar_tokenizer(self._tokenizer)
            processors.append(GrammarProcessor(self._grammar_tokenizer, grammar))
        return sampler, processors

    def prepare(self, params: ChatParams) -> Prepared:
        """Validate a request against the model and build what its generation needs (worker thread)."""
        tokenizer = self._tokenizer
        prompt = self._checked_prompt(params)  # rendered by the prompt pipeline already, as a rule
        max_tokens = fit_max_tokens(len(prompt), self.context_window, params.max_tokens,
                                    self.options.default_max_tokens)
        parser = OutputParser(params.stop, tokenizer.tool_call_start, tokenizer.tool_call_end, tokenizer.tool_parser,
                              params.tools, emit_calls=bool(params.tools) and params.tool_choice != "none",
                              think=self._think, thinking=self._opens_thinking(prompt))
        parser.feed(forced_prefix(params, tokenizer.tool_call_start, self._parser_type))
        sampler, processors = self._sampling(params)
        return Prepared(prompt, max_tokens, parser, sampler, processors)

    def _generate(self, job: _Job) -> None:
        prep = self.prepare(job.params)
        cache, reused = self.prompt_cache.lookup(prep.prompt)
        run = self._decode(job, prep, reused, cache)
        if not job.cancel.is_set():
            self._keep_cache(cache, run.seen)
        self.finish(job, prep, run, reused)
        if job.unloaded:
            raise _unloaded(self.model_id)

    def finish(self, job: _Job, prep: Prepared, run: Decoded, reused: int) -> None:
        """Metrics, then the final delta (held-back text, finish reason, usage) unless the client left."""
        # counted even when cancelled: the tokens were computed
        metrics.LLM_TOKENS.labels(self.model_id).inc(run.generated)
        metrics.LLM_PROMPT_TOKENS.labels(self.model_id).inc(len(prep.prompt))
        if job.cancel.is_set():
            return
        tail = prep.parser.finish()
        called = run.called or bool(tail.tool_calls)
        if run.generated > 1 and run.decode_s > 0:
            metrics.LLM_TPS.labels(self.model_id).observe((run.generated - 1) / run.decode_s)
        job.emit(ChatDelta(text=tail.text, tool_calls=tail.tool_calls, reasoning=tail.reasoning,
                           finish_reason="tool_calls" if called and run.finish != "length" else run.finish,
                           stop_sequence=prep.parser.stopped_by,
                           usage=Usage(prompt_tokens=len(prep.prompt), completion_tokens=run.generated,
                                       cached_tokens=reused)))

    def first_token(self, job: _Job) -> float:
        tic = time.perf_counter()
        metrics.LLM_TTFT.labels(self.model_id).observe(tic - job.started)
        return tic

    def emit_piece(self, job: _Job, run: Decoded, piece: Any, logprobs: list[dict[str, Any]] | None) -> None:
        if piece.text or piece.reasoning or piece.tool_calls or logprobs:
            run.called |= bool(piece.tool_calls)
            job.emit(ChatDelta(text=piece.text, tool_calls=piece.tool_calls, reasoning=piece.reasoning,
                               logprobs=logprobs))

    def _decode(self, job: _Job, prep: Prepared, reused: int, cache: list[Any]) -> Decoded:
        """Run mlx-lm on the prompt (after the `reused` cached tokens), emitting clean deltas as they come."""
        import mlx.core as mx
        from mlx_lm import stream_generate

        run = Decoded(seen=list(prep.prompt))
        tic = time.perf_counter()

        def between_prefill_steps(_done: int, _total: int) -> None:
            if job.cancel.is_set():  # a long prompt: stop between prefill steps, not only between tokens
                raise _Cancelled

        try:
            for response in stream_generate(self._model, self._tokenizer, mx.array(prep.prompt[reused:]),
                                            max_tokens=prep.max_tokens, sampler=prep.sampler,
                                            logits_processors=prep.processors, prompt_cache=cache,
                                            prefill_step_size=self.options.prefill_step_size,
                                            prompt_progress_callback=between_prefill_steps):
                run.seen.append(response.token)
                if job.cancel.is_set():
                    break
                if run.generated == 0:
                    tic = self.first_token(job)
                run.generated = response.generation_tokens
                piece = prep.parser.feed(response.text)
                self.emit_piece(job, run, piece, self.logprobs(response, job.params))
                if piece.stopped:
                    run.finish = "stop"
                    break
                run.finish = response.finish_reason or run.finish
        except _Cancelled:
            pass
        run.decode_s = time.perf_counter() - tic
        return run

    def _opens_thinking(self, prompt: list[int]) -> bool:
        """Whether the template left a think block open (the model starts by reasoning)."""
        if self._think is None:
            return False
        start = self._tokenizer.rfind_think_start(prompt)
        return start >= 0 and start > self._tokenizer.rfind_think_end(prompt)

    def _keep_cache(self, cache: list[Any], seen: list[int]) -> None:
        """Store the single path's cache under the tokens it holds (stream_generate may run one token ahead)."""
        offset = getattr(cache[0], "offset", None) if cache else None
        if not isinstance(offset, int):
            return
        if offset > len(seen):  # the generator ran one step ahead of what it handed out
            from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

            if not can_trim_prompt_cache(cache):
                return
            trim_prompt_cache(cache, offset - len(seen))
            offset = len(seen)
        self.prompt_cache.keep(seen[:offset], cache)

    def logprobs(self, response: Any, params: ChatParams) -> list[dict[str, Any]] | None:
        """OpenAI `logprobs.content` entries for a response's token (None unless the request asked)."""
        import mlx.core as mx

        if not params.logprobs:
            return None
        row = response.logprobs

        def entry(token: int, value: float) -> dict[str, Any]:
            text = self._tokenizer.decode([token])
            return {"token": text, "logprob": value, "bytes": list(text.encode("utf-8"))}

        top: list[dict[str, Any]] = []
        if params.top_logprobs:
            k = min(params.top_logprobs, row.size)
            ids = mx.argpartition(-row, kth=k - 1)[:k]
            values = row[ids]
            order = mx.argsort(-values)
            pairs: list[tuple[Any, Any]] = list(zip(ids[order].tolist(), values[order].tolist(), strict=True))  # type: ignore[arg-type]  # mlx types tolist() as any nesting
            top = [entry(int(t), float(v)) for t, v in pairs]
        return [{**entry(response.token, float(row[response.token].item())), "top_logprobs": top}]

    @property
    def model(self) -> Any:
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    # -- release --------------------------------------------------------------------------------------------

    async def close(self, drain_s: float = 0.0) -> None:
        """Refuse new requests, let running ones finish for `drain_s`, fail the rest, free the model's memory."""
        self._closing = True
        await drain_and_release(self._jobs, self._idle, self._executor, self._release, drain_s)

    def _release(self) -> None:
        self.scheduler.release()
        self.prompt_cache.clear()
        self._model = None
        self._tokenizer = None
        self.prompt_cache = PromptCache(None, 0)
        free_memory()


async def _drain(queue: asyncio.Queue[Any]) -> AsyncIterator[ChatDelta]:
    """The deltas a worker put on `queue`, until its end marker; a worker's exception is raised here."""
    item = await queue.get()
    while item is not _END:
        if isinstance(item, BaseException):
            raise item
        following = None
        # Deltas that piled up while the consumer was busy go out as one: fewer, larger chunks.
        while not item.finish_reason and not queue.empty():
            following = queue.get_nowait()
            if not isinstance(following, ChatDelta):
                break  # an end or an error: handled after this delta
            item, following = _merge(item, following), None
        yield item
        item = following if following is not None else await queue.get()


def _batchable_model(model: Any) -> bool:
    """mlx-lm batches a model only when every layer's cache can be merged into a batch (as its server checks)."""
    from mlx_lm.models.cache import make_prompt_cache

    return all(hasattr(layer, "merge") for layer in make_prompt_cache(model))


def _unloaded(model_id: str) -> ModelUnavailable:
    return ModelUnavailable(f"Model {model_id} was unloaded by a model swap during this request", "retry the request")


def _load(path: str) -> tuple[Any, Any, dict[str, Any]]:
    from pathlib import Path

    from mlx_lm import load

    local = Path(path).expanduser()
    if path.startswith(("/", ".", "~")) and not (local / "config.json").is_file():
        raise FileNotFoundError(f"no model directory at {local} (it needs config.json, *.safetensors and "
                                "tokenizer files; scripts/make_model.py builds one)")
    model, tokenizer, config = load(str(local) if local.exists() else path, return_config=True)  # type: ignore[misc]  # return_config=True: three items
    return model, tokenizer, config
