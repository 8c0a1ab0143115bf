"""core.disconnect.HangUpWatch: the work's result, or None once the client has gone — the work then cancelled, and
the request's own task left as it was (not cancelled, not cancelling)."""

from __future__ import annotations

import asyncio

import pytest

from ddx_omni.core.disconnect import HangUpWatch

POLL_S = 0.01


class Client:
    """A client that hangs up after `checks` questions (never, when None); counts the questions."""

    def __init__(self, checks: int | None = None) -> None:
        self.left_after, self.asked = checks, 0

    async def disconnected(self) -> bool:
        self.asked += 1
        return self.left_after is not None and self.asked >= self.left_after


async def test_work_that_never_waits_is_answered_without_asking() -> None:
    async def work() -> str:
        return "done"

    client = Client()
    assert await HangUpWatch(POLL_S).run(work(), client.disconnected) == "done"
    await asyncio.sleep(POLL_S * 5)  # no watcher left behind
    assert client.asked == 0 and asyncio.current_task().cancelling() == 0


async def test_slow_work_is_watched_and_answered() -> None:
    async def work() -> str:
        await asyncio.sleep(POLL_S * 6)
        return "done"

    client = Client()
    assert await HangUpWatch(POLL_S).run(work(), client.disconnected) == "done"
    asked = client.asked
    await asyncio.sleep(POLL_S * 5)
    assert asked >= 2 and client.asked == asked  # asked while it ran, never after


async def test_a_client_that_leaves_cancels_the_work() -> None:
    outcome = []

    async def work() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        return "done"

    client = Client(checks=3)
    assert await HangUpWatch(POLL_S).run(work(), client.disconnected) is None
    assert outcome == ["cancelled"] and client.asked == 3
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0)  # the task goes on as usual: no cancellation is left pending on it


async def test_work_that_swallows_the_cancellation_still_gives_none() -> None:
    async def work() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "saved"
        return "done"

    assert await HangUpWatch(POLL_S).run(work(), Client(checks=1).disconnected) is None
    assert asyncio.current_task().cancelling() == 0


async def test_errors_of_the_work_reach_the_caller() -> None:
    async def work() -> str:
        await asyncio.sleep(POLL_S * 3)
        raise ValueError("bad")

    client = Client()
    with pytest.raises(ValueError, match="bad"):
        await HangUpWatch(POLL_S).run(work(), client.disconnected)
    asked = client.asked
    await asyncio.sleep(POLL_S * 5)
    assert client.asked == asked


async def test_a_cancellation_from_outside_goes_on() -> None:
    started = asyncio.Event()

    async def work() -> str:
        started.set()
        await asyncio.sleep(30)
        return "done"

    waiting = asyncio.ensure_future(HangUpWatch(POLL_S).run(work(), Client().disconnected))
    await started.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_one_watch_tells_its_requests_apart() -> None:
    async def work(name: str) -> str:
        await asyncio.sleep(POLL_S * 8)
        return name

    watch, stays, leaves = HangUpWatch(POLL_S), Client(), Client(checks=2)
    answers = await asyncio.gather(watch.run(work("stays"), stays.disconnected),
                                   watch.run(work("leaves"), leaves.disconnected))
    assert answers == ["stays", None] and stays.asked >= 2 and not watch.watched
