"""Several dashboard replicas behind a real nginx, rendered from deploy/nginx.conf (the README's recipe).

:class:`Balancer` writes the config with free ports, starts ``nginx -c … -g 'daemon off;'`` as a
child of the test process, waits for it to answer, and stops it by PID (SIGQUIT, then SIGKILL) even
when a test fails.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.support.child import free_port
from tests.support.commands import REPO_ROOT

TEMPLATE = REPO_ROOT / "deploy" / "nginx.conf"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


class Balancer:
    """nginx on 127.0.0.1:PORT in front of ``upstreams`` (ports of dashboards on 127.0.0.1)."""

    def __init__(self, upstreams: Sequence[int]) -> None:
        self.upstreams = list(upstreams)
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="sidekick-nginx-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def config(self) -> str:
        servers = "\n".join(f"        server 127.0.0.1:{port};" for port in self.upstreams)
        temp = self._dir / "temp"
        temp.mkdir(exist_ok=True)
        return (
            TEMPLATE.read_text()
            .replace("@SERVERS@", servers)
            .replace("@LISTEN@", f"127.0.0.1:{self.port}")
            .replace("@PID@", str(self._dir / "nginx.pid"))
            .replace("@ERROR_LOG@", str(self._dir / "error.log"))
            .replace("@TEMP@", str(temp))
        )

    def __enter__(self) -> Balancer:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (scripts/ensure_nginx.sh installs it)")
        conf = self._dir / "nginx.conf"
        conf.write_text(self.config())
        self._proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self._dir), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nginx exited at start: {self.errors()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("nginx did not start listening within 15 s")

    def errors(self) -> str:
        with contextlib.suppress(OSError):
            return (self._dir / "error.log").read_text()[-2000:]
        return ""

    def replica_of(self, cookie: str) -> str:
        """Which upstream answers a request carrying ``sidekick_replica=cookie`` (host:port)."""
        request = urllib.request.Request(self.url + "_stcore/health", headers={"Cookie": f"sidekick_replica={cookie}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.headers.get("X-Sidekick-Replica", ""))

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self._dir, ignore_errors=True)


def cookie_for(balancer: Balancer, port: int, tries: int = 200) -> str:
    """A ``sidekick_replica`` cookie value that nginx routes to the replica on ``port``."""
    for i in range(tries):
        value = f"route-{i}"
        if balancer.replica_of(value).endswith(f":{port}"):
            return value
    raise RuntimeError(f"no cookie value among {tries} routes to port {port}")


__all__ = ["Balancer", "cookie_for", "free_port", "nginx_binary"]
