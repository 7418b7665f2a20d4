"""Process accounting and the last-resort kill, on real processes this test starts.

Stand-ins for Chromium and the Playwright driver are copies of ``sleep`` named ``chromium-fake`` and
``node``: psutil sees those names exactly as it sees the real ones, and they cost nothing to start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sidekick.browser.pool import BrowserPool
from sidekick.procs import browser_main_pids, browser_processes, driver_pids, kill_trees
from tests.support.waiting import poll


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    for name in ("chromium-fake", "node"):
        shutil.copy(shutil.which("sleep") or "/bin/sleep", tmp_path / name)
    return tmp_path


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def children_of(pid: int, count: int) -> list[psutil.Process]:
    found = poll(lambda: len(psutil.Process(pid).children(recursive=True)) >= count, timeout=5)
    assert found, f"process {pid} did not start {count} children"
    return psutil.Process(pid).children(recursive=True)


@pytest.fixture
def tree(fakes: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A shell running a fake Chromium, a fake driver and a plain sleep."""
    script = f'"{fakes}/chromium-fake" 60 & "{fakes}/node" 60 & sleep 60 & wait'
    with subprocess.Popen(["sh", "-c", script], start_new_session=True) as proc:
        try:
            children_of(proc.pid, 3)
            # A child is named "sh" from its fork until its exec: wait for the names too.
            assert poll(lambda: browser_processes(proc.pid, memory=False).processes == 2, timeout=5)
            yield proc
        finally:
            with_children = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
            for pid in with_children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(5)


def test_only_browsers_and_drivers_below_the_given_process_count(tree: subprocess.Popen[bytes]) -> None:
    report = browser_processes(tree.pid)
    names = {p.pid: psutil.Process(p.pid).name() for p in report.procs}
    assert sorted(names.values()) == ["chromium-fake", "node"]  # the plain sleep is not counted
    assert len(report.browser_pids) == 1 and len(report.driver_pids) == 1 and report.processes == 2
    assert all(p.bytes > 0 for p in report.procs) and report.total_mb > 0
    assert all(p.bytes == 0 for p in browser_processes(tree.pid, memory=False).procs)
    # Our own report includes them (they descend from us), and driver_pids agrees.
    assert set(report.browser_pids) <= set(browser_processes(memory=False).browser_pids)
    assert set(report.driver_pids) <= driver_pids() and driver_pids(tree.pid) == set(report.driver_pids)


def test_a_browser_that_is_not_our_descendant_is_never_counted(fakes: Path) -> None:
    # The shell starts the fake and exits at once: the fake is reparented away from us, like the
    # crashpad handlers Chromium leaves behind.
    out = subprocess.run(
        ["sh", "-c", f'"{fakes}/chromium-fake" 60 >/dev/null 2>&1 & echo $!'],
        capture_output=True, text=True, check=True, timeout=5,
    )
    orphan = int(out.stdout)
    try:
        assert psutil.Process(orphan).name() == "chromium-fake"
        assert orphan not in browser_processes(memory=False).browser_pids
    finally:
        os.kill(orphan, signal.SIGKILL)


def test_a_process_that_has_gone_reports_nothing() -> None:
    with subprocess.Popen(["true"]) as proc:
        proc.wait(5)
    assert browser_processes(proc.pid).processes == 0 and driver_pids(proc.pid) == set()


def test_gone_since_lists_what_exited(tree: subprocess.Popen[bytes]) -> None:
    before = browser_processes(tree.pid)
    [fake_browser] = before.browser_pids
    os.kill(fake_browser, signal.SIGKILL)
    assert poll(lambda: browser_processes(tree.pid).processes == 1, timeout=5)
    assert browser_processes(tree.pid).gone_since(before).browser_pids == (fake_browser,)


def test_kill_trees_kills_the_tree_it_is_given_and_nothing_else() -> None:
    with (
        subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"]) as target,
        subprocess.Popen(["sleep", "60"]) as bystander,
    ):
        try:
            victims = [target.pid, *(c.pid for c in children_of(target.pid, 2))]
            assert kill_trees([target.pid]) == len(victims) == 3
            target.wait(5)
            assert poll(lambda: all(gone(pid) for pid in victims), timeout=5)
            assert bystander.poll() is None and not gone(bystander.pid)
            assert kill_trees([target.pid]) == 0 and kill_trees([]) == 0  # already gone: nothing to do
        finally:
            bystander.kill()
            bystander.wait(5)
            target.kill()
            target.wait(5)


async def test_the_pools_real_processes_are_found(pool: BrowserPool) -> None:
    sb = await pool.new_session_browser()
    try:
        main = pool.browser_pid
        assert main is not None and main in browser_main_pids()
        assert psutil.Process(main).ppid() in driver_pids()  # Chromium's main process is the driver's child
        assert set(browser_processes(main, memory=False).browser_pids) <= set(browser_processes().browser_pids)
    finally:
        await sb.aclose()
