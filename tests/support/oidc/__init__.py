"""A real OpenID Connect provider for the sign-in tests: npm's `oidc-provider`, run by ``provider.mjs``.

    with OidcProvider(workdir, redirect_uris=["http://127.0.0.1:8501/oauth2callback"]) as op:
        op.issuer, op.client_id, op.client_secret, op.metadata_url
        secrets = op.streamlit_secrets("http://127.0.0.1:8501/oauth2callback")  # an [auth] section

The provider knows :data:`ACCOUNTS` (Alice and Bob) and signs them in with a plain form: account id
and password. The package is pinned and installed into ``.make/node`` by
``scripts/ensure_mcp_servers.sh``, which :meth:`OidcProvider.start` runs first (idempotent, fast).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tests.support.child import ChildServer
from tests.support.commands import REPO_ROOT

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


class OidcProvider(ChildServer):
    """``node provider.mjs`` on a free 127.0.0.1 port, with one client. States: new → running → stopped.

    The provider's output goes to ``workdir/oidc-provider.log``. :meth:`close` is idempotent and ends
    the provider, and anything it started, by PID.
    """

    what = "The OIDC provider"
    log_name = "oidc-provider.log"

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
        super().__init__(workdir, startup_timeout=startup_timeout)
        self.redirect_uris = list(redirect_uris)
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.accounts = tuple(accounts)
        self.state = State.NEW

    @property
    def issuer(self) -> str:
        return self.origin

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

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
        self.state = State.RUNNING
        accounts = json.dumps({a.id: {"password": a.password, "name": a.name, "email": a.email} for a in self.accounts})

        def command(port: int) -> list[str]:
            # --name=value: a random secret may begin with "-", which node's parseArgs would take
            # for another option.
            return [node, str(SCRIPT), f"--port={port}", f"--client-id={self.client_id}",
                    f"--client-secret={self.client_secret}", f"--accounts={accounts}",
                    *(f"--redirect-uri={uri}" for uri in self.redirect_uris)]  # fmt: skip

        try:
            self._start(command, self._serves_discovery, attempts=attempts)
        except BaseException:
            self.close()
            raise
        return self

    def _serves_discovery(self, opener: urllib.request.OpenerDirector) -> bool:
        """The discovery document names our issuer."""
        with opener.open(self.metadata_url, timeout=2) as reply:
            return bool(json.loads(reply.read()).get("issuer") == self.issuer)

    def close(self) -> None:
        """Stop the provider and anything it left. Idempotent; a provider never started just becomes stopped."""
        self._stop()
        self.state = State.STOPPED
