"""Waiting for a condition, with a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

import psutil

C = TypeVar("C", bound=Collection[Any])


def poll(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; return it (or the last value)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def until_empty(measure: Callable[[], C], timeout: float, interval: float = 0.1) -> C:
    """Measure until the result is empty (say, processes that should exit) or ``timeout`` passes;
    return the last measurement, so the caller counts what is left instead of failing at once."""
    deadline = time.monotonic() + timeout
    while (left := measure()) and time.monotonic() < deadline:
        time.sleep(interval)
    return left


async def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy, and return that.

    Raises ``TimeoutError`` naming ``what`` and the last value when ``timeout`` passes first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what or 'condition'} not reached within {timeout:g} s (last: {value!r})")
        await asyncio.sleep(interval)


def alive_pids(pids: Iterable[int]) -> list[int]:
    """The PIDs that still run (zombies count as gone)."""
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out
