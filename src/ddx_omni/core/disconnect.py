"""Waiting for the work of a plain (non-streamed) HTTP request while watching whether its client hung up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request

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


class _Watched:
    __slots__ = ("disconnected", "hung_up")

    def __init__(self, disconnected: Callable[[], Awaitable[bool]]) -> None:
        self.disconnected, self.hung_up = disconnected, False


class HangUpWatch:
    """The clients of the plain requests in flight, asked every `poll_s` whether they have hung up; the request
    of one that has is cancelled in its own task — the way `asyncio.timeout` cancels at its deadline.

    One task asks them all, and only while there are any: a timer per request (with uvloop, a libuv handle each)
    cost ~5 % of a mock chat request, and a task per request (the work run beside the request's own) ~15 %
    (BENCHMARKS.md, per-request overhead)."""

    def __init__(self, poll_s: float = 0.1) -> None:
        self.poll_s = poll_s
        self.watched: dict[asyncio.Task[Any], _Watched] = {}
        self.asker: asyncio.Task[None] | None = None

    async def run(self, work: Awaitable[T], disconnected: Callable[[], Awaitable[bool]]) -> T | None:
        """`work`'s result, or None when the client went away first: `work` is then cancelled (and with it the
        generation it waits on). It runs in this task, as a plain `await` would."""
        task = asyncio.current_task()
        assert task is not None, "HangUpWatch.run runs in a task"
        entry = self.watched[task] = _Watched(disconnected)
        self._start_asking()
        result: T | None = None
        try:
            result = await work
        except asyncio.CancelledError:
            if not entry.hung_up or task.cancelling() > 1:  # a cancellation from outside (too): it goes on
                raise
        finally:
            del self.watched[task]
            if entry.hung_up:  # take ours back, as asyncio.timeout does
                task.uncancel()
        return None if entry.hung_up else result  # None also when the work swallowed the cancellation

    def _start_asking(self) -> None:
        loop = asyncio.get_running_loop()
        if self.asker is None or self.asker.done() or self.asker.get_loop() is not loop:
            self.asker = loop.create_task(self._ask())

    async def _ask(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if not self.watched:
                return  # idle: the next request starts another
            for task, entry in list(self.watched.items()):
                if self.watched.get(task) is entry and await entry.disconnected() \
                        and self.watched.get(task) is entry:  # still running once the answer came
                    entry.hung_up = True
                    task.cancel()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None when the client of `request` went away first (the app's HangUpWatch)."""
    watch: HangUpWatch = request.app.state.hang_ups
    return await watch.run(work, request.is_disconnected)
