"""A server the tests run as a child process on a free 127.0.0.1 port, its output in a log file.

:class:`ChildServer` owns the process: it starts the command a subclass builds for a port, retries
on another free port when a process took the probed one before the child could bind it, waits until
the subclass's readiness probe answers (or the child exits, which is reported with its log), and
stops it by PID: a signal, SIGKILL only if it lingers, and then whatever it left behind (its
descendants, remembered before the signal) is killed once a grace period has passed.

The OIDC provider (``tests.support.oidc``) and the dashboard (``tests.support.dashboard``) are two.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

from tests.support.commands import REPO_ROOT


def free_port() -> int:
    """A port of 127.0.0.1 free now (a child may still lose it to another process: see :class:`PortTaken`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_alive(proc: psutil.Process) -> bool:
    """Still running, and the same process (``is_running`` compares creation times, so PID reuse is safe)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


Probe = Callable[[urllib.request.OpenerDirector], bool]
"""Is the child ready? Given an opener that never uses a proxy; URL and OS errors count as no."""


class PortTaken(Exception):
    """Another process took the free port between our probe and the child's bind."""


class ChildServer:
    """One child process serving on ``127.0.0.1:port``. Subclasses call :meth:`_start` and
    :meth:`_stop`; ``what`` names it in messages, ``log_name`` is its log in ``workdir``."""

    what = "The server"
    log_name = "server.log"
    port_taken = re.compile(r"already in use|address in use|EADDRINUSE", re.IGNORECASE)

    def __init__(self, workdir: Path, *, startup_timeout: float) -> None:
        self.workdir = Path(workdir)
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.killed = False  # the last stop had to SIGKILL the child
        self.leftovers: list[int] = []  # descendants that outlived it and were killed
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._descendants: list[psutil.Process] = []

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``, once started."""
        assert self.port is not None, f"{self.what} was not started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    @property
    def pid(self) -> int:
        assert self._proc is not None, f"{self.what} was not started"
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- for subclasses --------------------------------------------------------------------------
    def _start(
        self,
        command: Callable[[int], Sequence[str]],
        ready: Probe,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        attempts: int = 3,
    ) -> None:
        """Run ``command(port)`` until ``ready`` says yes, on a free port (tried ``attempts`` times)
        or on ``port`` (once: nobody else can choose it for us). On any failure the child is stopped."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        tries = 1 if port is not None else attempts
        for attempt in range(1, tries + 1):
            self.port = port or free_port()
            self._log = open(self.log_path, "ab")  # closed by _stop()
            self._proc = subprocess.Popen(
                list(command(self.port)),
                cwd=REPO_ROOT,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            try:
                self._wait_ready(ready)
                return
            except PortTaken:
                self._stop()
                self.killed = False
                if port is not None:
                    raise RuntimeError(f"Port {port} is taken.\n{self.output()}") from None
                if attempt == tries:
                    raise RuntimeError(f"No free port after {tries} attempts.\n{self.output()}") from None
            except BaseException:
                self._stop()
                raise

    def _wait_ready(self, ready: Probe) -> None:
        assert self._proc is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy for 127.0.0.1
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out = self.output()
                if self.port_taken.search(out):
                    raise PortTaken
                raise RuntimeError(f"{self.what} exited with code {self._proc.returncode} on start:\n{out}")
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                if ready(opener):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.what} was not ready within {self.startup_timeout:g} s:\n{self.output()}")

    def _signal(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send ``sig`` and wait; SIGKILL only if it does not exit. Its exit code (None if never started).
        Its descendants are remembered first, for :meth:`_stop` to reap."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                self._descendants = psutil.Process(proc.pid).children(recursive=True)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def _stop(self, grace: float = 0.0) -> None:
        """Stop the child (SIGTERM) and kill its descendants still alive ``grace`` s later; close the log.
        Idempotent."""
        if self._proc is not None:
            self._signal()
            deadline = time.monotonic() + grace
            while any(is_alive(p) for p in self._descendants) and time.monotonic() < deadline:
                time.sleep(0.1)
            for proc in self._descendants:
                if is_alive(proc):  # ours: they descend from the child this harness started
                    self.leftovers.append(proc.pid)
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.kill()
            self._descendants = []
        if self._log is not None:
            self._log.close()
            self._log = None
