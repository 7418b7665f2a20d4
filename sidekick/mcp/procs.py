"""MCP server processes: started in a process group of their own, ended as a whole group, counted.

Every stdio server is started with ``start_new_session=True``, so it leads a new process group
whose id is its PID. Wrappers (``npx``, ``uvx``, a shell script) and whatever the server forks stay
in that group unless they call ``setsid`` themselves, which is why the end is a group kill, not a
kill of the one process we started; a descendant that did leave the group is still found through
the process tree, captured just before the end. A group is registered here from its start until we
have seen it empty, which is what :func:`mcp_processes` counts and :func:`kill_mcp_processes` ends.

The end (:func:`end_group`) follows the MCP stdio shutdown: stdin closed, then SIGTERM to the group,
then SIGKILL after a short grace, each step bounded, so it finishes within about ``3 * grace``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterable
from contextlib import suppress

import anyio
import psutil
from anyio.abc import Process

from sidekick.procs import Proc, ProcessReport, memory_bytes

GRACE_SECONDS = 1.0
_POLL_SECONDS = 0.05

_lock = threading.Lock()
# Process group id -> the server's label ("time", "files@session-3"); read from any thread.
_groups: dict[int, str] = {}


def register_group(pgid: int, label: str) -> None:
    with _lock:
        _groups[pgid] = label


def _unregister_group(pgid: int) -> None:
    with _lock:
        _groups.pop(pgid, None)


def _registered() -> dict[int, str]:
    with _lock:
        return dict(_groups)


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _group_members(pgids: Iterable[int]) -> list[psutil.Process]:
    """Live processes in any of ``pgids``, wherever they were reparented to."""
    wanted = set()
    for pgid in pgids:
        # The cheap question first: a group with no member at all (not even a zombie) is gone.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, 0)
            wanted.add(pgid)
    if not wanted:
        return []
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) in wanted and _live(proc):
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its live descendants, including those that left its process group."""
    try:
        root = psutil.Process(pid)
        return [p for p in (root, *root.children(recursive=True)) if _live(p)]
    except psutil.NoSuchProcess:
        return []


def _survivors(pgid: int, known: list[psutil.Process]) -> list[psutil.Process]:
    found = {p.pid: p for p in _group_members([pgid])}
    for proc in known:
        if proc.pid not in found and _live(proc):
            found[proc.pid] = proc
    return list(found.values())


def _signal(pgid: int, procs: list[psutil.Process], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for proc in procs:  # descendants that left the group (psutil checks the PID was not reused)
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(sig)


async def _wait_gone(pgid: int, known: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    left = _survivors(pgid, known)
    while left and time.monotonic() < deadline:
        await anyio.sleep(_POLL_SECONDS)
        left = _survivors(pgid, known)
    return left


async def end_group(process: Process, grace: float = GRACE_SECONDS) -> None:
    """End a server started as a group leader, and everything it started; never raises.

    Shielded and bounded, so it completes even when the owner task is being cancelled.
    """
    pgid = process.pid
    with anyio.move_on_after(4 * grace + 1, shield=True):
        known = tree(pgid)
        if process.stdin is not None:
            with suppress(Exception):  # already closed, or the server is gone: nothing to say
                await process.stdin.aclose()
        with anyio.move_on_after(grace):
            await process.wait()
        # The leader may be gone while a wrapper's child still runs: always ask the group.
        known += [p for p in tree(pgid) if p.pid not in {k.pid for k in known}]
        left = _survivors(pgid, known)
        if left:
            _signal(pgid, left, signal.SIGTERM)
            left = await _wait_gone(pgid, left, grace)
        if left:
            _signal(pgid, left, signal.SIGKILL)
            left = await _wait_gone(pgid, left, grace)
        with anyio.move_on_after(grace):
            await process.wait()  # reaps the leader
        if not left:
            _unregister_group(pgid)


McpProcessReport = ProcessReport  # an MCP server's processes: ``kind`` is the server's name


def mcp_processes(*, memory: bool = True) -> ProcessReport:
    """Every live process of every MCP server group this process started (for the resources panel).

    Counts the group's members even after a wrapper exited and its child was reparented, and the
    leader's descendants that left the group. Safe to call from any thread.
    """
    groups = _registered()
    found: dict[int, Proc] = {}
    for proc in _group_members(groups):
        with suppress(ProcessLookupError, psutil.NoSuchProcess):
            label = groups.get(os.getpgid(proc.pid), "?")
            found[proc.pid] = Proc(proc.pid, label, memory_bytes(proc) if memory else 0)
    for pgid, label in groups.items():
        for proc in tree(pgid):
            if proc.pid not in found:
                found[proc.pid] = Proc(proc.pid, label, memory_bytes(proc) if memory else 0)
    return ProcessReport(tuple(found.values()))


def kill_mcp_processes() -> int:
    """Last resort at exit, when the loop cannot run the graceful close: SIGKILL every server group."""
    killed = 0
    groups = _registered()
    for proc in [*_group_members(groups), *(p for g in groups for p in tree(g))]:
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.kill()
            killed += 1
    for pgid in groups:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return killed
