"""Throwaway PostgreSQL clusters for tests and benchmarks: Debian's server binaries, a temporary
folder, a free port on 127.0.0.1 and a socket folder of its own, so a test cluster never meets
another (nor the machine's own ``main`` cluster).

:func:`postgres_cluster` starts one and always stops it (``pg_ctl stop -m fast``) and deletes its
folder, whatever the ``with`` block did. ``initdb`` refuses to run as root, so as root every server
command runs as the ``postgres`` user (``runuser``) on a folder that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.child import free_port

MISSING = (
    "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): "
    "run scripts/ensure_postgres.sh as root, or `apt-get install postgresql`."
)


class PostgresUnavailable(Exception):
    """No server binaries on this machine; the message says how to install them."""


def server_bin() -> Path:
    """The newest installed server's bin folder."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise PostgresUnavailable(MISSING)
    return Path(found[-1]).parent


@dataclass
class Cluster:
    """One running server. ``stop``/``start`` restart it on the same port and data (for tests of a
    database that goes away and comes back)."""

    bin: Path
    root: Path
    port: int
    as_user: list[str]
    user: str

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
        done = self._pg_ctl("-l", str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start", timeout=90)
        if done.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed ({done.returncode}): {done.stderr}\n{log}")

    def stop(self) -> None:
        """Stop it now (fast: open connections are ended). Stopping a stopped server is fine."""
        self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop", timeout=90)

    @property
    def running(self) -> bool:
        return self._pg_ctl("status").returncode == 0

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    """A fresh cluster on a free port; stopped and deleted on exit, even when the block fails."""
    bin_dir = server_bin()
    root = Path(tempfile.mkdtemp(prefix="sidekick-pg-"))
    try:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
            as_user, user = ["runuser", "-u", "postgres", "--"], "postgres"
        else:
            as_user, user = [], pwd.getpwuid(os.geteuid()).pw_name
        cluster = Cluster(bin_dir, root, free_port(), as_user, user)
        subprocess.run([*as_user, "mkdir", "-m", "700", str(cluster.socket_dir)], check=True, timeout=30)
        subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(cluster.data), "-A", "trust", "-U", user,
             "--no-sync", "-E", "UTF8", "--locale=C"],
            capture_output=True,
            check=True,
            timeout=120,
        )
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def cluster_or_skip() -> Iterator[Cluster]:
    """A throwaway cluster for a fixture; without PostgreSQL's binaries the test skips, saying how
    to install them (the only reason these tests skip)."""
    import pytest

    try:
        with postgres_cluster() as running:
            yield running
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
