"""The sign-in tests' OpenID Connect provider, proven over plain HTTP before any browser relies on it.

An authorization-code flow as Streamlit's st.login runs it (PKCE S256, ``prompt=select_account``,
client_secret_basic), with httpx following the provider's own sign-in form; nothing listens on the
redirect URI: the flow stops at the redirect that carries the code.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import psutil
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.child import free_port, is_alive
from tests.support.oidc import ACCOUNTS, ALICE, Account, OidcProvider

pytestmark = pytest.mark.timeout(120)

REDIRECT_URI = f"http://127.0.0.1:{free_port()}/oauth2callback"
FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path_factory.mktemp("oidc"), redirect_uris=[REDIRECT_URI]) as op:
        yield op


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # A fresh cookie jar per test: a browser of its own, never signed in before.
    with httpx.Client(timeout=10, trust_env=False) as c:
        yield c


def discovery(client: httpx.Client, op: OidcProvider) -> dict[str, object]:
    reply = client.get(op.metadata_url)
    reply.raise_for_status()
    return dict(reply.json())


def start_flow(client: httpx.Client, op: OidcProvider) -> tuple[httpx.Response, str, str, str]:
    """GET the authorization endpoint and follow to the sign-in form: (form page, state, nonce, verifier)."""
    meta = discovery(client, op)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "client_id": op.client_id, "response_type": "code", "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile", "prompt": "select_account", "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    page = client.get(str(meta["authorization_endpoint"]), params=params, follow_redirects=True)
    return page, state, nonce, verifier


def submit(client: httpx.Client, page: httpx.Response, login: str, password: str) -> httpx.Response:
    """Fill and post the sign-in form; follow redirects until one leaves for the redirect URI."""
    match = FORM_ACTION.search(page.text)
    assert match, f"no sign-in form in:\n{page.text}"
    reply = client.post(urljoin(str(page.url), unescape(match[1])), data={"login": login, "password": password})
    for _ in range(10):
        location = reply.headers.get("location", "")
        if not reply.is_redirect or location.startswith(REDIRECT_URI):
            return reply
        reply = client.get(urljoin(str(reply.url), location))
    raise AssertionError("too many redirects")


def sign_in(client: httpx.Client, op: OidcProvider, account: Account) -> dict[str, object]:
    """The whole code flow for ``account``; the verified ID token's claims."""
    page, state, nonce, verifier = start_flow(client, op)
    reply = submit(client, page, account.id, account.password)
    assert reply.is_redirect, reply.text
    callback = parse_qs(urlsplit(reply.headers["location"]).query)
    assert callback["state"] == [state]
    assert callback["iss"] == [op.issuer]  # RFC 9207: the provider names itself in the callback

    meta = discovery(client, op)
    tokens = client.post(
        str(meta["token_endpoint"]),
        data={"grant_type": "authorization_code", "code": callback["code"][0], "redirect_uri": REDIRECT_URI,
              "code_verifier": verifier},
        auth=(op.client_id, op.client_secret),
    )  # fmt: skip
    assert tokens.status_code == 200, tokens.text
    keys = KeySet.import_key_set(client.get(str(meta["jwks_uri"])).json())
    claims = dict(jwt.decode(tokens.json()["id_token"], keys, algorithms=["RS256"]).claims)
    assert claims["iss"] == op.issuer
    assert claims["aud"] == op.client_id
    assert claims["nonce"] == nonce
    return claims


def test_discovery_document_names_the_issuer_and_its_endpoints(provider: OidcProvider, client: httpx.Client) -> None:
    meta = discovery(client, provider)
    assert meta["issuer"] == provider.issuer
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri", "end_session_endpoint"):
        assert str(meta[endpoint]).startswith(provider.issuer + "/")
    assert "S256" in meta["code_challenge_methods_supported"]  # type: ignore[operator]


@pytest.mark.parametrize("account", ACCOUNTS, ids=lambda a: a.id)
def test_a_code_flow_returns_an_id_token_with_the_accounts_claims(
    provider: OidcProvider, client: httpx.Client, account: Account
) -> None:
    claims = sign_in(client, provider, account)
    assert claims["sub"] == account.id
    assert claims["name"] == account.name  # in the ID token itself: Streamlit reads nothing else
    assert claims["email"] == account.email


def test_a_wrong_password_is_refused_and_the_form_shown_again(provider: OidcProvider, client: httpx.Client) -> None:
    page, *_ = start_flow(client, provider)
    reply = submit(client, page, ALICE.id, "not-her-password")
    assert reply.status_code == 401
    assert "Wrong account or password." in reply.text
    assert FORM_ACTION.search(reply.text)
    # The same interaction still accepts the right password.
    assert submit(client, reply, ALICE.id, ALICE.password).headers["location"].startswith(REDIRECT_URI)


def test_the_secrets_section_points_streamlit_at_this_provider(provider: OidcProvider) -> None:
    import tomllib

    auth = tomllib.loads(provider.streamlit_secrets(REDIRECT_URI))["auth"]
    assert auth["server_metadata_url"] == provider.metadata_url
    assert (auth["client_id"], auth["client_secret"]) == (provider.client_id, provider.client_secret)
    assert auth["redirect_uri"] == REDIRECT_URI
    assert len(auth["cookie_secret"]) >= 32


def test_closing_ends_the_provider_and_a_second_close_is_harmless(tmp_path: Path) -> None:
    op = OidcProvider(tmp_path, redirect_uris=[REDIRECT_URI]).start()
    try:
        node = psutil.Process(op.pid)
        url = op.metadata_url
    finally:
        op.close()
    assert not is_alive(node)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2, trust_env=False)
    op.close()
    with pytest.raises(RuntimeError, match="starts once"):
        op.start()
