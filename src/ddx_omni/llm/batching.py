"""Continuous batching: concurrent requests to one model decode together, through mlx-lm's BatchGenerator.

The scheduler runs on the engine's MLX thread while a request is waiting or running, and returns when there is
none. Each step it admits waiting requests (up to `[llm].max_batch_size`; BatchGenerator interleaves their
prefill with the decoding of the others), drops the cancelled ones, decodes one token for every member and hands
each token to its own request: detokenizer, output parser (stop strings, tool calls, reasoning), logprobs. Each
member keeps its own sampler and logits processors (penalties, logit_bias, the response_format grammar).
A request that cannot be batched (`MlxEngine.single_reason`) waits until the batch is empty and then runs alone;
the requests behind it wait for it, so arrival order is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core import metrics

if TYPE_CHECKING:
    from .mlx_engine import Decoded, MlxEngine, Prepared, _Job

log = logging.getLogger("ddx_omni.llm.batching")


@dataclass(eq=False)
class _Member:
    """One request in the batch (worker thread only)."""

    job: _Job
    prep: Prepared
    reused: int  # prompt tokens that came from the prompt cache
    detokenizer: Any
    run: Decoded
    tic: float = 0.0  # when its first token came


class Scheduler:
    def __init__(self, engine: MlxEngine, executor: Executor, max_batch_size: int) -> None:
        self.max_batch_size = max_batch_size
        self.batched = 0  # requests served in the batch / alone, for /health and the tests
        self.alone = 0
        self._engine = engine
        self._executor = executor
        self._lock = threading.Lock()  # guards _inbox and _running (the event loop appends, the worker pops)
        self._inbox: deque[_Job] = deque()
        self._running = False
        self._members: dict[int, _Member] = {}
        self._generator: Any = None

    @property
    def active(self) -> int:
        return len(self._members)

    def submit(self, job: _Job) -> None:
        with self._lock:
            self._inbox.append(job)
            if self._running:
                return
            self._running = True
        self._executor.submit(self._loop)

    def _loop(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception as exc:  # the batch itself failed: fail its members, start the next one afresh
                log.exception("batched generation failed")
                self._fail_all(exc)

    def _step(self) -> bool:
        self._admit()
        if self._members:
            self._advance()
            return True
        with self._lock:
            if self._inbox:
                return True
            self._running = False
            return False

    def _admit(self) -> None:
        while True:
            with self._lock:
                if not self._inbox:
                    return
                job = self._inbox[0]
                alone = self.max_batch_size == 1 or self._engine.single_reason(job.params) is not None
                if not job.cancel.is_set() and (alone and self._members
                                                or not alone and len(self._members) >= self.max_batch_size):
                    return  # it waits for room (or, to run alone, for an empty batch)
                self._inbox.popleft()
            if alone or job.cancel.is_set():
                self.alone += not job.cancel.is_set()
                self._engine.run_single(job)  # also answers a cancelled or unloaded job
            else:
                self._join(job)

    def _join(self, job: _Job) -> None:
        from .mlx_engine import Decoded

        engine = self._engine
        try:  # a failure here is this request's alone: it is not in the batch yet
            prep = engine.prepare(job.params)
            cache, reused = engine.prompt_cache.lookup(prep.prompt)
            (uid,) = self._batch().insert([prep.prompt[reused:]], max_tokens=[prep.max_tokens], caches=[cache],
                                          all_tokens=[prep.prompt[:reused]], samplers=[prep.sampler],
                                          logits_processors=[prep.processors])
        except Exception as exc:
            engine.fail(job, exc)
            engine.end(job)
            return
        self._members[uid] = _Member(job, prep, reused, engine.tokenizer.detokenizer, Decoded(seen=[]))
        self.batched += 1

    def _batch(self) -> Any:
        if self._generator is None:
            from mlx_lm.generate import BatchGenerator

            engine = self._engine
            self._generator = BatchGenerator(
                engine.model, stop_tokens=[[t] for t in engine.tokenizer.eos_token_ids],
                completion_batch_size=self.max_batch_size, prefill_batch_size=self.max_batch_size,
                prefill_step_size=engine.options.prefill_step_size)
        return self._generator

    def _advance(self) -> None:
        generator = self._batch()
        gone = [uid for uid, member in self._members.items() if member.job.cancel.is_set()]
        if gone:
            generator.remove(gone)
            for uid in gone:
                self._retire(uid, None, [])
        if not self._members:
            return
        _, responses = generator.next()
        if responses:
            metrics.LLM_BATCH_SIZE.labels(self._engine.model_id).observe(len(responses))
        for response in responses:
            if response.uid in self._members:
                self._deliver(response)

    def _deliver(self, response: Any) -> None:
        """One token of one member: text through its parser to its client; its end, when this is the last."""
        engine, member = self._engine, self._members[response.uid]
        run = member.run
        if run.generated == 0:
            member.tic = engine.first_token(member.job)
        run.generated += 1  # the end-of-sequence token counts, as on the single path
        if response.finish_reason != "stop":  # on "stop" the token is the end-of-sequence one: no text
            member.detokenizer.add_token(response.token)
        if response.finish_reason is not None:
            member.detokenizer.finalize()
        piece = member.prep.parser.feed(member.detokenizer.last_segment)
        engine.emit_piece(member.job, run, piece, engine.logprobs(response, member.job.params))
        if piece.stopped:  # a stop string: this member ends here, the others go on
            run.finish = "stop"
            kept = self._batch().remove([response.uid], return_prompt_caches=True).get(response.uid)
            self._retire(response.uid, *(kept or (None, [])))
        elif response.finish_reason is not None:
            run.finish = response.finish_reason
            self._retire(response.uid, response.prompt_cache, response.all_tokens or [])

    def _retire(self, uid: int, cache: list[Any] | None, tokens: list[int]) -> None:
        """A member left the batch: keep its KV cache for later turns, send its final delta (or its error)."""
        engine = self._engine
        member = self._members.pop(uid)
        member.run.decode_s = time.perf_counter() - member.tic if member.tic else 0.0
        if cache and not member.job.cancel.is_set():
            engine.prompt_cache.keep(tokens, cache)
        engine.finish(member.job, member.prep, member.run, member.reused)
        if member.job.unloaded:
            engine.fail(member.job, engine.unloaded_error())
        engine.end(member.job)

    def _fail_all(self, exc: Exception) -> None:
        for member in self._members.values():
            self._engine.fail(member.job, exc)
            self._engine.end(member.job)
        self._members.clear()
        self.release()

    def release(self) -> None:
        """Drop the batch state (worker thread): on a failure, and before the model is freed."""
        generator, self._generator = self._generator, None
        if generator is not None:
            generator.close()
