"""One session's browser context: a reset during a navigation says so plainly."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import pytest

from sidekick.browser.pool import BrowserPool
from sidekick.errors import SessionClosedError
from tests.support.fakes.site import HangingLoad
from tests.support.waiting import wait_until

RESET = "This browser session was reset or ended."


async def test_closing_the_session_aborts_its_navigation_with_a_session_closed_error(
    pool: BrowserPool, hanging: Callable[[float], Awaitable[HangingLoad]]
) -> None:
    load = await hanging(30)
    await load.browser.aclose()
    with pytest.raises(SessionClosedError, match="reset or ended"):
        await asyncio.wait_for(load.loading, 10)
    assert load.browser.closed and pool.browser_connected()  # the browser itself lives on for other sessions


# Regression (bug 5): SessionBrowser.call turned a timeout straight into "did not finish within"
# without looking at its own state, so a session reset while its navigation was timing out was
# reported as the site's fault: NavigationError("… did not finish loading within 1 s."). Here
# Chromium is paused (SIGSTOP) so the reset's page close cannot abort the navigation and the
# navigation's own timeout fires first, with the session already closed. Now the closed state is
# checked first: SessionClosedError, "reset or ended".
async def test_a_navigation_that_times_out_after_a_reset_says_the_session_was_reset(
    pool: BrowserPool, hanging: Callable[[float], Awaitable[HangingLoad]]
) -> None:
    load = await hanging(1)
    closing: asyncio.Task[None] | None = None
    os.kill(load.chromium, signal.SIGSTOP)
    try:
        closing = asyncio.create_task(load.browser.aclose())
        await wait_until(lambda: load.browser.closed, timeout=5, what="the session marked closed")
        with pytest.raises(SessionClosedError) as info:
            await asyncio.wait_for(load.loading, 10)
        assert str(info.value) == RESET
    finally:
        os.kill(load.chromium, signal.SIGCONT)
        if closing is not None:
            await asyncio.wait_for(closing, 15)
    assert pool.browser_connected() and pool.crashes == 0
