"""A real Playwright browser server (``python -m playwright run-server``) on a free loopback port.

``with run_server() as server:`` starts one and ends it, with every process it started. ``server``
is the ``ws://127.0.0.1:PORT/`` URL itself (a ``str``, so it goes straight into
``chromium.connect`` or ``SIDEKICK_BROWSER_ENDPOINTS``) and also the handle: ``server.url``,
``server.kill()`` (SIGKILL the whole tree at once, as a browser host that dies), ``server.restart()``
(the same URL again, after a kill), ``server.browser_pids()`` and ``server.renderers()`` (Chromium
processes the server runs now, by process accounting). :func:`remote_settings` turns test settings
into settings that browse on these servers. :func:`devtools_chromium` is the other kind of endpoint:
a Chromium with a DevTools port (``cdp:`` + its ``url``).

The server runs with ``--unsafe``: Playwright's own Chromium is not downloaded here, so the client
must be allowed to name the executable (Sidekick sends ``SIDEKICK_BROWSER_PATH``, see
:func:`remote_settings`). The ``python -m playwright`` wrapper runs the server as a Node child and
does not pass signals on: ending the wrapper leaves Node (and its Chromium) running, reparented to
PID 1. So the Node child is found by PID and ended first (SIGTERM: the server closes its browsers
and exits), then the wrapper follows; whatever is left after a while is killed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from sidekick.browser.chromium import find_browser, launch_args
from sidekick.config import Settings
from sidekick.procs import browser_processes, kill_trees
from tests.support.child import free_port

START_SECONDS = 30.0
STOP_SECONDS = 10.0


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


class RunServer(str):
    """The server's ``ws://`` URL, and the handle on its processes (see the module docstring)."""

    port: int
    wrapper: subprocess.Popen[bytes] | None
    node_pid: int | None

    def __new__(cls, port: int) -> RunServer:
        server = super().__new__(cls, f"ws://127.0.0.1:{port}/")
        server.port = port
        server.wrapper = None
        server.node_pid = None
        return server

    @property
    def url(self) -> str:
        return str.__str__(self)

    @property
    def running(self) -> bool:
        return self.wrapper is not None and self.wrapper.poll() is None

    def start(self) -> RunServer:
        if self.running:
            return self
        cmd = [sys.executable, "-m", "playwright", "run-server", "--port", str(self.port),
               "--host", "127.0.0.1", "--unsafe"]
        self.wrapper = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_SECONDS
        while not _accepts(self.port):
            if self.wrapper.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"playwright run-server did not listen on {self.url}")
            time.sleep(0.05)
        children = psutil.Process(self.wrapper.pid).children()
        self.node_pid = children[0].pid if children else None
        return self

    def _pids(self) -> list[int]:
        # Node first: it owns the browsers; the wrapper only waits for it.
        return [pid for pid in (self.node_pid, self.wrapper.pid if self.wrapper else None) if pid is not None]

    def kill(self) -> None:
        """End the server abruptly (SIGKILL, whole tree), as a browser host that dies; waits until gone."""
        pids = self._pids()
        tree = [p.pid for pid in pids for p in _descendants(pid)]
        kill_trees(pids)
        self._reap()
        deadline = time.monotonic() + STOP_SECONDS
        while not _gone(tree + pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> RunServer:
        """Start again on the same port (after :meth:`kill` or :meth:`stop`)."""
        self.stop()
        deadline = time.monotonic() + STOP_SECONDS
        while _accepts(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start()

    def stop(self) -> None:
        """End the server gracefully (its browsers close), by PID; kill what is left after a while."""
        if self.wrapper is None:
            return
        pids = self._pids()
        if self.wrapper.poll() is None and self.node_pid is not None:
            # A SIGTERM that comes while the server is still closing the browser of a client that
            # just left hangs its exit: let those close first (they do within a second or so).
            deadline = time.monotonic() + STOP_SECONDS
            while self.browser_pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                os.kill(self.node_pid, signal.SIGTERM)  # the server closes its browsers and exits
            except ProcessLookupError:
                pass
            try:
                self.wrapper.wait(STOP_SECONDS / 2)
            except subprocess.TimeoutExpired:
                pass
        if not _gone(pids):
            kill_trees(pids)
        self._reap()

    def _reap(self) -> None:
        if self.wrapper is not None:
            try:
                self.wrapper.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            if self.wrapper.stdin is not None:
                self.wrapper.stdin.close()
        self.wrapper = None
        self.node_pid = None

    def browser_pids(self) -> tuple[int, ...]:
        """Chromium processes the server runs now (all its browsers' processes)."""
        return browser_processes(self.node_pid, memory=False).browser_pids if self.node_pid else ()

    def renderers(self) -> int:
        """Renderer processes under the server: a page open in any context there has one."""
        count = 0
        for pid in self.browser_pids():
            try:
                if "--type=renderer" in psutil.Process(pid).cmdline():
                    count += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return count


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@contextmanager
def run_server(port: int | None = None) -> Iterator[RunServer]:
    """A started browser server on a free loopback port; stopped (every process gone) at the end."""
    server = RunServer(port or free_port())
    try:
        yield server.start()
    finally:
        server.stop()


def remote_settings(settings: Settings, *servers: str) -> Settings:
    """``settings`` browsing on ``servers`` (``ws://`` or ``cdp:`` endpoints), with this machine's
    Chromium named for them (the servers run ``--unsafe``, so they accept the path)."""
    return dataclasses.replace(
        settings, browser_endpoints=",".join(servers), browser_path=settings.browser_path or find_browser(settings)
    )


class DevToolsChromium:
    """A Chromium of its own with a DevTools endpoint (what a ``cdp:`` endpoint such as browserless
    serves): ``url`` is ``http://127.0.0.1:PORT``. It outlives its clients, unlike a run-server's."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.folder = folder
        args = [find_browser(settings), "--headless=new", "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1", f"--user-data-dir={folder}", *launch_args(), "about:blank"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = folder / "DevToolsActivePort"
        deadline = time.monotonic() + START_SECONDS
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text().split()[0]}"

    def stop(self) -> None:
        kill_trees([self.process.pid])
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pass


@contextmanager
def devtools_chromium(settings: Settings, folder: Path) -> Iterator[DevToolsChromium]:
    """A started :class:`DevToolsChromium` with its profile in ``folder``; killed (whole tree) at the end."""
    browser = DevToolsChromium(settings, folder)
    try:
        yield browser
    finally:
        browser.stop()
