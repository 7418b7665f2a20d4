"""One way to close things: bounded, quiet, and said once.

Every owner in Sidekick closes what it holds in reverse order, and a close that hangs or fails must
never stop the closes after it. :func:`close_quietly` is that rule in one place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger(__name__)


async def close_quietly(closing: Awaitable[object], timeout: float, what: str = "a close") -> bool:
    """Await ``closing`` for at most ``timeout`` seconds; failures are logged, never raised.

    Returns whether it finished in time. Cancellation of the caller still propagates.
    """
    try:
        async with asyncio.timeout(timeout):
            await closing
        return True
    except TimeoutError:
        log.info("%s did not finish within %g s", what, timeout)
        return False
    except Exception as exc:  # a dead browser or driver fails its close; nothing is left to free
        log.debug("%s failed: %r", what, exc)
        return True
