"""Waiting for the work of a plain (non-streamed) HTTP request while watching whether its client hung up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def finished_before_hangup(task: asyncio.Future[Any], disconnected: Callable[[], Awaitable[bool]],
                                 poll_s: float) -> bool:
    """True once `task` is done; False as soon as `disconnected()` says the client has gone.

    The task is left running then: each caller stops its work its own way (cancel it, or let it save what it
    produced)."""
    await asyncio.sleep(0)  # one step: work that never waits (mock engine, cache hit) is done without a timer
    if task.done():
        return True
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return True
        if await disconnected():
            return False


async def unless_disconnected(work: Awaitable[T], disconnected: Callable[[], Awaitable[bool]],
                              poll_s: float = 0.1) -> T | None:
    """`work`'s result, or None when the client went away first (then `work` is cancelled, and with it the
    generation it waits on)."""
    task = asyncio.ensure_future(work)
    if await finished_before_hangup(task, disconnected, poll_s):
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
