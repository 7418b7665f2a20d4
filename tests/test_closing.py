"""close_quietly: bounded and quiet, and still cancellable by its caller."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from sidekick.closing import close_quietly


async def test_a_close_that_finishes_is_true() -> None:
    done: list[bool] = []

    async def close() -> None:
        done.append(True)

    assert await close_quietly(close(), 1.0) is True and done == [True]


async def test_a_close_that_fails_is_true_and_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def close() -> None:
        raise ConnectionError("Target closed")

    with caplog.at_level(logging.DEBUG, logger="sidekick.closing"):
        assert await close_quietly(close(), 1.0, "Closing a dead page") is True
    messages = [r.getMessage() for r in caplog.records]
    assert any("Closing a dead page failed" in m and "Target closed" in m for m in messages)


async def test_a_close_that_hangs_is_false_within_its_bound_and_is_cancelled() -> None:
    cancelled: list[bool] = []

    async def close() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    started = time.monotonic()
    assert await close_quietly(close(), 0.05, "Closing Chromium") is False
    assert time.monotonic() - started < 1.0
    assert cancelled == [True]  # nothing is left running behind the caller's back


async def test_cancelling_the_caller_propagates() -> None:
    entered = asyncio.Event()

    async def close() -> None:
        entered.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(close_quietly(close(), 10.0))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
