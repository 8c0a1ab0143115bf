"""Vision engine: one mlx-vlm vision-language model behind the ChatEngine protocol (chat with images).

Like the text engine, every MLX call (load, preprocess, generate, release) runs on ONE worker thread, and deltas
cross to the event loop through an asyncio queue; a consumer that goes away stops the worker at its next token.
Requests run one at a time: mlx-vlm keeps per-request state on the model (Qwen-VL's rope deltas), so images are
not batched. The KV cache of the last generation is reused for the next prompt with the same beginning when
the new part is text only (mlx-vlm's rule) and the images before it are the same ones (checked here by hash:
mlx-vlm compares token ids only, and two same-sized images have the same ids).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import metrics
from ..core.errors import ContextTooLong, ModelUnavailable, RequestInvalid
from .engine import ChatDelta, ChatParams, Usage, drain_and_release, free_memory, generation_failure
from .images import IMAGE_PART_TYPES
from .mlx_engine import _template_message, forced_prefix
from .output import OutputParser
from .structured import GrammarProcessor, grammar_for, grammar_tokenizer

_END = object()


@dataclass(eq=False)
class _Job:
    params: ChatParams
    emit: Callable[[Any], None]
    started: float
    cancel: threading.Event = field(default_factory=threading.Event)
    unloaded: bool = False


@dataclass
class _Inputs:
    """A prompt as the model takes it: token ids, pixels, and the processor's extra arrays (image_grid_thw…)."""

    input_ids: Any
    pixel_values: Any
    mask: Any
    extra: dict[str, Any]
    text: str
    image_keys: list[str]

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


def template_message(message: dict[str, Any]) -> dict[str, Any]:
    """OpenAI message → chat-template message; a content list with images keeps its order as text/image parts."""
    out = _template_message(message)
    content = message.get("content")
    if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") in IMAGE_PART_TYPES for p in content):
        out["content"] = [{"type": "image"} if p.get("type") in IMAGE_PART_TYPES
                          else {"type": "text", "text": p.get("text", "")} for p in content if isinstance(p, dict)]
    return out


def image_key(image: Any) -> str:
    return hashlib.sha1(f"{image.size}".encode() + image.tobytes()).hexdigest()


class VisionEngine:
    """A loaded VLM. Build it with `await VisionEngine.load(...)`; release it with `await close()`."""

    def __init__(self, model_id: str, executor: ThreadPoolExecutor, loaded: tuple[Any, Any, Any, dict[str, Any]],
                 context_window: int | None, options: dict[str, Any]) -> None:
        self.model_id = model_id
        self._executor = executor
        self._model, self._processor, self._tokenizer, config = loaded
        text_config = config.get("text_config") or {}
        self.context_window = int(context_window or config.get("max_position_embeddings")
                                  or text_config.get("max_position_embeddings") or 4096)
        self._prefill_step_size = options.get("prefill_step_size", 2048)
        self._default_temperature = options.get("default_temperature", 1.0)
        self._default_max_tokens = options.get("default_max_tokens", 512)
        self._image_token_index = getattr(self._model.config, "image_token_index", None)
        self._think = ((self._tokenizer.think_start, self._tokenizer.think_end)
                       if self._tokenizer.has_thinking else None)
        self._parser_type = (getattr(self._tokenizer, "init_kwargs", {}) or {}).get("tool_parser_type")
        self._cache_state: Any = None  # mlx-vlm's PromptCacheState of the last generation (worker thread only)
        self._cache_images: list[str] = []  # the images in it, by hash
        self._grammar_tokenizer: Any = None
        self._jobs: set[_Job] = set()
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_used = time.monotonic()  # `[llm].idle_unload_s` unloads the model this long after it

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    @classmethod
    async def load(cls, model_id: str, path: str, *, context_window: int | None = None, options: Any = None,
                   **settings: Any) -> VisionEngine:
        """The text engine's signature: either `options` (an object with the [llm] settings) or them as keywords."""
        names = ("prefill_step_size", "default_temperature", "default_max_tokens")
        found = {n: getattr(options, n) for n in names if hasattr(options, n)} | settings
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vlm-{model_id[-24:]}")
        start = time.perf_counter()
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(executor, _load, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        metrics.LLM_LOAD_SECONDS.labels(model_id).observe(time.perf_counter() - start)
        return cls(model_id, executor, loaded, context_window, found)

    # -- prompt ---------------------------------------------------------------------------------------------

    def _prompt_text(self, params: ChatParams) -> str:
        if isinstance(params.prompt, str):  # legacy completions: the text as given, no template
            return params.prompt
        if params.prompt is not None:
            raise RequestInvalid("a vision model takes a text prompt, not token ids", param="prompt")
        tools = params.tools if params.tools and params.tool_choice != "none" else None
        messages = [template_message(m) for m in params.messages]
        try:
            text = self._tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                                       tokenize=False)
        except Exception as exc:  # jinja raises on conversations its template refuses
            raise RequestInvalid(f"The model's chat template rejected the messages: {exc}", param="messages") from None
        return text + forced_prefix(params, self._tokenizer.tool_call_start, self._parser_type)

    def _inputs(self, params: ChatParams) -> _Inputs:
        """The model's inputs (worker thread: the processor makes MLX arrays)."""
        from mlx_vlm.utils import prepare_inputs

        text = self._prompt_text(params)
        images = params.images or None
        try:
            inputs = prepare_inputs(self._processor, images=images, prompts=text,
                                    image_token_index=self._image_token_index, add_special_tokens=False)
        except (ValueError, IndexError) as exc:  # an image count the template did not place, a degenerate image
            raise RequestInvalid(f"The model's processor rejected the images: {exc}", param="messages") from None
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "pixel_values", "attention_mask")}
        return _Inputs(inputs["input_ids"], inputs.get("pixel_values"), inputs.get("attention_mask"), extra, text,
                       [image_key(i) for i in params.images])

    def _count(self, params: ChatParams) -> int | None:
        """Prompt tokens without touching MLX: text tokens plus what the processor's sizing gives each image."""
        from mlx_vlm.utils import estimate_num_image_tokens

        ids = self._tokenizer.encode(self._prompt_text(params), add_special_tokens=False)
        try:
            # each image's one placeholder token is widened to the image's tokens
            return len(ids) + sum(estimate_num_image_tokens(self._processor, img.height, img.width) - 1
                                  for img in params.images)
        except NotImplementedError:  # a fixed-size processor: count on the worker, the exact way
            return None

    async def count_prompt_tokens(self, params: ChatParams) -> int:
        counted = await asyncio.to_thread(self._count, params)
        if counted is not None:
            return counted
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: self._inputs(params).length)

    # -- generation -----------------------------------------------------------------------------------------

    async def stream(self, params: ChatParams) -> AsyncIterator[ChatDelta]:
        if self._closing:
            raise ModelUnavailable(f"Model {self.model_id} is being unloaded", "retry the request")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def emit(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop has closed (shutting down): nobody is listening
                pass

        job = _Job(params=params, emit=emit, started=time.perf_counter())
        self._jobs.add(job)
        self._idle.clear()
        self.last_used = time.monotonic()
        loop.run_in_executor(self._executor, self._run, job)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancel.set()
            self._jobs.discard(job)
            self.last_used = time.monotonic()
            if not self._jobs:
                self._idle.set()

    def _run(self, job: _Job) -> None:
        try:
            if job.unloaded:
                raise _unloaded(self.model_id)
            if not job.cancel.is_set():
                self._generate(job)
        except Exception as exc:  # surfaced to the request; never kills the worker thread
            job.emit(generation_failure(exc))
        finally:
            job.emit(_END)

    def _sampling(self, params: ChatParams) -> tuple[Any, list[Any]]:
        import mlx.core as mx
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        if params.logprobs:
            raise RequestInvalid(f"logprobs are not available from the vision model {self.model_id}",
                                 param="logprobs")
        if params.seed is not None:
            mx.random.seed(params.seed)  # the worker is the only thread drawing from MLX's generator
        temperature = self._default_temperature if params.temperature is None else params.temperature
        sampler = make_sampler(temp=temperature, top_p=params.top_p or 0.0, min_p=params.min_p or 0.0,
                               top_k=params.top_k or 0)
        processors = make_logits_processors(logit_bias=params.logit_bias or None,
                                            repetition_penalty=params.repetition_penalty,
                                            presence_penalty=params.presence_penalty,
                                            frequency_penalty=params.frequency_penalty)
        grammar = grammar_for(params.response_format)
        if grammar is not None:  # last, so that no bias can bring back a token the grammar forbids
            if self._grammar_tokenizer is None:
                self._grammar_tokenizer = grammar_tokenizer(self._tokenizer)
            processors.append(GrammarProcessor(self._grammar_tokenizer, grammar))
        return sampler, processors

    def _parser(self, params: ChatParams, text: str) -> OutputParser:
        tok = self._tokenizer
        opens = self._think is not None and text.rfind(self._think[0]) > text.rfind(self._think[1])
        parser = OutputParser(params.stop, tok.tool_call_start, tok.tool_call_end, tok.tool_parser, params.tools,
                              emit_calls=bool(params.tools) and params.tool_choice != "none", think=self._think,
                              thinking=opens)
        parser.feed(forced_prefix(params, tok.tool_call_start, self._parser_type))
        return parser

    def _generate(self, job: _Job) -> None:
        params = job.params
        inputs = self._inputs(params)
        max_tokens = params.max_tokens or min(self._default_max_tokens, self.context_window - inputs.length)
        if max_tokens < 1 or inputs.length + max_tokens > self.context_window:
            raise ContextTooLong(f"{inputs.length} prompt tokens + max_tokens {max_tokens} exceed the context "
                                 f"window of {self.context_window}", param="messages")
        parser = self._parser(params, inputs.text)
        generated, finish, called, cached = self._decode(job, inputs, parser, max_tokens)
        metrics.LLM_TOKENS.labels(self.model_id).inc(generated)
        metrics.LLM_PROMPT_TOKENS.labels(self.model_id).inc(inputs.length)
        if job.unloaded:
            raise _unloaded(self.model_id)
        if job.cancel.is_set():
            return
        tail = parser.finish()
        called = called or bool(tail.tool_calls)
        job.emit(ChatDelta(text=tail.text, tool_calls=tail.tool_calls, reasoning=tail.reasoning,
                           finish_reason="tool_calls" if called and finish != "length" else finish,
                           stop_sequence=parser.stopped_by,
                           usage=Usage(prompt_tokens=inputs.length, completion_tokens=generated,
                                       cached_tokens=cached)))

    def _cache_for(self, inputs: _Inputs) -> Any:
        """The kept cache state when its images agree with this prompt's (one list a prefix of the other)."""
        from mlx_vlm.generate.common import PromptCacheState

        kept, common = self._cache_images, min(len(self._cache_images), len(inputs.image_keys))
        if self._cache_state is None or kept[:common] != inputs.image_keys[:common]:
            self._cache_state = PromptCacheState()
        self._cache_images = []  # until this generation completes, the state is not a known one
        return self._cache_state

    def _decode(self, job: _Job, inputs: _Inputs, parser: OutputParser, max_tokens: int) -> tuple[int, str, bool, int]:
        """Run mlx-vlm, emitting clean deltas; (generated tokens, finish reason, a call was emitted, cached)."""
        from mlx_vlm import stream_generate

        sampler, processors = self._sampling(job.params)
        state = self._cache_for(inputs)
        generated, finish, called, cached, complete = 0, "stop", False, 0, False
        for response in stream_generate(self._model, self._processor, inputs.text, input_ids=inputs.input_ids,
                                        pixel_values=inputs.pixel_values, mask=inputs.mask, max_tokens=max_tokens,
                                        sampler=sampler, logits_processors=processors,
                                        prefill_step_size=self._prefill_step_size, prompt_cache_state=state,
                                        **inputs.extra):
            if job.cancel.is_set():
                break
            if generated == 0:
                metrics.LLM_TTFT.labels(self.model_id).observe(time.perf_counter() - job.started)
            generated, cached = response.generation_tokens, response.cached_tokens or 0
            piece = parser.feed(response.text)
            if piece.text or piece.reasoning or piece.tool_calls:
                called |= bool(piece.tool_calls)
                job.emit(ChatDelta(text=piece.text, tool_calls=piece.tool_calls, reasoning=piece.reasoning))
            if piece.stopped:
                break
            finish = response.finish_reason or finish
        else:
            complete = True  # mlx-vlm saved the cache state after its last item
        self._cache_images = inputs.image_keys if complete else []
        if not complete:
            self._cache_state = None  # stopped early: mlx-vlm did not record what the cache now holds
        return generated, finish, called, cached

    # -- release --------------------------------------------------------------------------------------------

    async def close(self, drain_s: float = 0.0) -> None:
        """Refuse new requests, let running ones finish for `drain_s`, fail the rest, free the model's memory."""
        self._closing = True
        await drain_and_release(self._jobs, self._idle, self._executor, self._release, drain_s)

    def _release(self) -> None:
        self._model = self._processor = self._tokenizer = None
        self._cache_state, self._cache_images = None, []
        free_memory()


def _unloaded(model_id: str) -> ModelUnavailable:
    return ModelUnavailable(f"Model {model_id} was unloaded by a model swap during this request", "retry the request")


def _load(path: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model, processor, mlx-lm tokenizer wrapper for templates and tool-call parsing, config)."""
    from mlx_lm.tokenizer_utils import load as load_tokenizer
    from mlx_vlm import load
    from mlx_vlm.utils import get_model_path, load_config

    local = Path(path).expanduser()
    if path.startswith(("/", ".", "~")) and not (local / "config.json").is_file():
        raise FileNotFoundError(f"no model directory at {local} (it needs config.json, *.safetensors, tokenizer "
                                "and processor files; scripts/make_vlm.py builds one)")
    model_path = get_model_path(str(local) if local.exists() else path)
    model, processor = load(str(model_path))
    config = load_config(model_path)
    return model, processor, load_tokenizer(Path(model_path), eos_token_ids=config.get("eos_token_id")), config
