"""Waiting for the work of a plain (non-streamed) HTTP request while watching whether its client hung up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def finished_before_hangup(task: asyncio.Future[Any], disconnected: Callable[[], Awaitable[bool]],
                                 poll_s: float) -> bool:
    """True once `task` is done; False as soon as `disconnected()` says the client has gone.

    The task is left running then: the caller stops it its own way (Responses lets a turn save what it produced)."""
    await asyncio.sleep(0)  # one step: work that never waits (mock engine, cache hit) is done without a timer
    if task.done():
        return True
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return True
        if await disconnected():
            return False


class _HangUpWatch:
    """Every `poll_s`, asks `disconnected()` (in a task of its own) and, once the client has gone, cancels `task`
    — the request's own task, which is running the work: the way `asyncio.timeout` cancels at its deadline."""

    def __init__(self, task: asyncio.Task[Any], disconnected: Callable[[], Awaitable[bool]], poll_s: float) -> None:
        self.task, self.disconnected, self.poll_s = task, disconnected, poll_s
        self.hung_up = self.stopped = False
        self.probe: asyncio.Task[None] | None = None
        self.timer = asyncio.get_running_loop().call_later(poll_s, self._ask)

    def _ask(self) -> None:
        self.probe = asyncio.get_running_loop().create_task(self._check())

    async def _check(self) -> None:
        gone = await self.disconnected()
        if self.stopped:  # the work ended meanwhile: nothing to cancel any more
            return
        if gone:
            self.hung_up = True
            self.task.cancel()
        else:
            self.timer = asyncio.get_running_loop().call_later(self.poll_s, self._ask)

    def stop(self) -> None:
        self.stopped = True
        self.timer.cancel()
        if self.probe is not None:
            self.probe.cancel()


async def unless_disconnected(work: Awaitable[T], disconnected: Callable[[], Awaitable[bool]],
                              poll_s: float = 0.1) -> T | None:
    """`work`'s result, or None when the client went away first (then `work` is cancelled, and with it the
    generation it waits on).

    The work runs in this task, as a plain `await` would, and a timer watches the client: no second task and no
    extra turn of the event loop for work that never waits (the mock engine, a cache hit) — those were ~15 % of a
    mock chat request (BENCHMARKS.md, per-request overhead)."""
    task = asyncio.current_task()
    assert task is not None, "unless_disconnected runs in a task"
    watch = _HangUpWatch(task, disconnected, poll_s)
    result: T | None = None
    try:
        result = await work
    except asyncio.CancelledError:
        if not watch.hung_up or task.cancelling() > 1:  # a cancellation from outside (too): it goes on
            raise
    finally:
        watch.stop()
        if watch.hung_up:  # take ours back, as asyncio.timeout does
            task.uncancel()
    return None if watch.hung_up else result  # None also when the work swallowed the cancellation
