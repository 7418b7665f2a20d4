"""Process and memory accounting, for this process's descendants only.

Other Chromium or Streamlit processes on the machine are never counted or touched: we walk
``psutil.Process(pid).children(recursive=True)``. Memory is PSS (proportional set size, shared pages
split fairly between processes), falling back to RSS where PSS cannot be read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

BROWSER_NAMES = ("chromium", "chrome", "headless_shell", "chrome_crashpad")
DRIVER_NAMES = ("node", "node-mainthread")


def _kind(proc: psutil.Process) -> str | None:
    try:
        name = proc.name().lower()
        if any(name.startswith(n) for n in BROWSER_NAMES):
            return "browser"
        if name in DRIVER_NAMES or "playwright" in " ".join(proc.cmdline()[:3]):
            return "driver"
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return None


def memory_bytes(proc: psutil.Process) -> int:
    """A process's memory: PSS (shared pages split fairly), else RSS; 0 once it is gone."""
    try:
        try:
            return int(proc.memory_full_info().pss)
        except (psutil.AccessDenied, AttributeError):
            return int(proc.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return 0


@dataclass(frozen=True)
class Proc:
    pid: int
    kind: str  # "browser" or "driver"; for an MCP server's process, the server's name
    bytes: int


@dataclass(frozen=True)
class ProcessReport:
    """Processes this process started (browsers and drivers, or MCP servers), with their memory."""

    procs: tuple[Proc, ...]

    def pids_of(self, kind: str | None = None) -> tuple[int, ...]:
        """The PIDs of that kind (default: all)."""
        return tuple(p.pid for p in self.procs if kind is None or p.kind == kind)

    @property
    def pids(self) -> tuple[int, ...]:
        return self.pids_of()

    @property
    def browser_pids(self) -> tuple[int, ...]:
        return self.pids_of("browser")

    @property
    def driver_pids(self) -> tuple[int, ...]:
        return self.pids_of("driver")

    @property
    def processes(self) -> int:
        return len(self.procs)

    @property
    def total_bytes(self) -> int:
        return sum(p.bytes for p in self.procs)

    @property
    def total_mb(self) -> float:
        return self.total_bytes / 2**20

    def gone_since(self, earlier: ProcessReport) -> ProcessReport:
        """The processes of ``earlier`` that are no longer here (with their memory then)."""
        now = {p.pid for p in self.procs}
        return ProcessReport(tuple(p for p in earlier.procs if p.pid not in now))


def browser_processes(pid: int | None = None, *, memory: bool = True) -> ProcessReport:
    """Chromium and Playwright-driver processes descending from ``pid`` (default: this process)."""
    try:
        children = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    procs = []
    for child in children:
        kind = _kind(child)
        if kind is not None and _alive(child):
            procs.append(Proc(child.pid, kind, memory_bytes(child) if memory else 0))
    return ProcessReport(tuple(procs))


def browser_main_pids(pid: int | None = None) -> set[int]:
    """Main Chromium processes (children of a Playwright driver) descending from ``pid``."""
    report = browser_processes(pid, memory=False)
    drivers = set(report.driver_pids)
    mains = set()
    for child_pid in report.browser_pids:
        try:
            if psutil.Process(child_pid).ppid() in drivers:
                mains.add(child_pid)
        except psutil.NoSuchProcess:
            pass
    return mains


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def self_memory_bytes() -> int:
    """This process's own RSS (the Python server, without its children)."""
    return int(psutil.Process().memory_info().rss)


def driver_pids(pid: int | None = None) -> set[int]:
    """Playwright driver processes descending from ``pid`` (default: this process)."""
    return set(browser_processes(pid, memory=False).driver_pids)


def kill_trees(pids: list[int]) -> int:
    """Last resort when a graceful close timed out: SIGKILL these processes and their descendants.

    Returns how many were killed. Callers pass only processes they started themselves.
    """
    victims: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            victims += [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            continue
    killed = 0
    for proc in victims:
        try:
            proc.kill()
            killed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return killed
