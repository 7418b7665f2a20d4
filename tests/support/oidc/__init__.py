"""A real OpenID Connect provider for the sign-in tests: npm's `oidc-provider`, run by ``provider.mjs``.

    with OidcProvider(workdir, redirect_uris=["http://127.0.0.1:8501/oauth2callback"]) as op:
        op.issuer, op.client_id, op.client_secret, op.metadata_url
        secrets = op.streamlit_secrets("http://127.0.0.1:8501/oauth2callback")  # an [auth] section

The provider knows :data:`ACCOUNTS` (Alice and Bob) and signs them in with a plain form: account id
and password. The package is pinned and installed into ``.make/node`` by
``scripts/ensure_mcp_servers.sh``, which :meth:`OidcProvider.start` runs first (idempotent, fast).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO

import psutil

from tests.support.dashboard import REPO_ROOT, free_port, is_alive

__all__ = ["ACCOUNTS", "ALICE", "BOB", "Account", "OidcProvider", "ensure_installed"]

SCRIPT = Path(__file__).with_name("provider.mjs")
INSTALL = REPO_ROOT / "scripts" / "ensure_mcp_servers.sh"


@dataclass(frozen=True)
class Account:
    """A user of the test provider. ``id`` is what they type as their account, and the ID token's ``sub``."""

    id: str
    password: str
    name: str
    email: str


ALICE = Account("alice", "alice-wonderland", "Alice Example", "alice@example.test")
BOB = Account("bob", "bob-builder", "Bob Example", "bob@example.test")
ACCOUNTS = (ALICE, BOB)


class State(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


def ensure_installed() -> None:
    """Install the pinned npm packages into ``.make/node`` unless they are there already."""
    subprocess.run([str(INSTALL)], check=True, timeout=300, stdin=subprocess.DEVNULL)


class OidcProvider:
    """``node provider.mjs`` on a free 127.0.0.1 port, with one client. States: new → running → stopped.

    The provider's output goes to ``workdir/oidc-provider.log``. :meth:`close` is idempotent and ends
    the provider, and anything it started, by PID.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        redirect_uris: Sequence[str],
        client_id: str = "sidekick-dashboard",
        client_secret: str | None = None,
        accounts: Sequence[Account] = ACCOUNTS,
        startup_timeout: float = 30.0,
    ) -> None:
        if not redirect_uris:
            raise ValueError("the client needs at least one redirect URI")
        self.workdir = Path(workdir)
        self.redirect_uris = list(redirect_uris)
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.accounts = tuple(accounts)
        self.startup_timeout = startup_timeout
        self.state = State.NEW
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def issuer(self) -> str:
        assert self.port is not None, "the provider was not started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the provider was not started"
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "oidc-provider.log"

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def streamlit_secrets(self, redirect_uri: str, cookie_secret: str | None = None) -> str:
        """The ``[auth]`` section of ``.streamlit/secrets.toml`` that signs a dashboard in through this
        provider (Streamlit's "default" provider, so a bare ``st.login()`` uses it)."""
        if redirect_uri not in self.redirect_uris:
            raise ValueError(f"{redirect_uri} is not one of this client's redirect URIs")
        values = {
            "redirect_uri": redirect_uri,
            "cookie_secret": cookie_secret or secrets.token_urlsafe(32),
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "server_metadata_url": self.metadata_url,
        }
        # A JSON string is a valid TOML basic string.
        return "[auth]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, attempts: int = 3) -> OidcProvider:
        if self.state is not State.NEW:
            raise RuntimeError(f"an OidcProvider starts once (it is {self.state.value})")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node not found: install Node.js 20 (apt-get install nodejs npm)")
        ensure_installed()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state = State.RUNNING
        accounts = {a.id: {"password": a.password, "name": a.name, "email": a.email} for a in self.accounts}
        try:
            for attempt in range(1, attempts + 1):
                self.port = free_port()
                self._log = open(self.log_path, "ab")  # closed by close()
                # --name=value: a random secret may begin with "-", which node's parseArgs would
                # take for another option.
                command = [node, str(SCRIPT), f"--port={self.port}", f"--client-id={self.client_id}",
                           f"--client-secret={self.client_secret}", f"--accounts={json.dumps(accounts)}"]  # fmt: skip
                for uri in self.redirect_uris:
                    command += [f"--redirect-uri={uri}"]
                self._proc = subprocess.Popen(
                    command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
                )
                try:
                    self._wait_ready()
                    return self
                except _PortTaken:
                    # Another process took the free port between our probe and the provider's bind.
                    self._stop_process()
                    if attempt == attempts:
                        raise RuntimeError(f"No free port after {attempts} attempts.\n{self.output()}") from None
        except BaseException:
            self.close()
            raise
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        """Until the discovery document names our issuer."""
        assert self._proc is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy for 127.0.0.1
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out = self.output()
                if re.search(r"EADDRINUSE", out):
                    raise _PortTaken
                raise RuntimeError(f"The OIDC provider exited with code {self._proc.returncode} on start:\n{out}")
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                with opener.open(self.metadata_url, timeout=2) as reply:
                    if json.loads(reply.read()).get("issuer") == self.issuer:
                        return
            time.sleep(0.1)
        raise RuntimeError(f"The OIDC provider did not serve its discovery document within "
                           f"{self.startup_timeout:g} s:\n{self.output()}")  # fmt: skip

    def _stop_process(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers; then kill any descendant it left behind."""
        proc, self._proc = self._proc, None
        if proc is not None:
            children: list[psutil.Process] = []
            if proc.poll() is None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    children = psutil.Process(proc.pid).children(recursive=True)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            for child in children:  # ours: they descend from the provider this harness started
                if is_alive(child):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stop the provider. Idempotent; a provider never started just becomes stopped."""
        self._stop_process()
        self.state = State.STOPPED


class _PortTaken(Exception):
    pass
