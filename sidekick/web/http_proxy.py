"""The web policy's HTTP proxy, for browsers elsewhere and the Python sandbox: CONNECT and plain GET,
each with credentials of its own.

Chromium does not authenticate to a SOCKS5 proxy (Playwright refuses ``socks5://`` with a username:
"Browser does not support socks5 proxy authentication"), so a browser on another machine, where
anyone on the network could reach the listener, is sent here instead, with Basic credentials that
:meth:`HttpProxy.grant` mints for one context and :meth:`HttpProxy.revoke` takes back. It speaks:

- ``CONNECT host:port`` (HTTPS, WebSockets, anything tunnelled): ``200`` and a relay;
- absolute-form requests (``GET http://host:port/path HTTP/1.1``), which is how Chromium sends plain
  ``http://`` loads to an HTTP proxy: the head is rewritten to origin form, ``Proxy-*`` headers and
  hop-by-hop ``Connection`` headers are dropped, ``Connection: close`` is added to the request and to
  the site's answer (one request per connection, so a later request on it, perhaps for another host
  with that host's cookies, cannot go down a connection checked for this one), and the rest is relayed.

Either is checked exactly as the SOCKS listener checks (the same ``admit``, connecting only to the
checked addresses: :class:`~sidekick.web.tunnel.TunnelServer`). Missing or wrong credentials get
``407``, a denied target ``403`` naming the rule, an unreachable one ``502``, anything else ``400``;
each answer closes the connection. Credentials are compared in constant time and never logged.

The same proxy also listens on a unix socket for the Python sandbox (:meth:`TunnelServer.listen_unix`):
only processes that can open the socket file reach it (our user, and the sandboxes it is bound
into), so requests there need no credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
from urllib.parse import urlsplit

from sidekick.errors import ConfigError
from sidekick.web.policy import UrlVerdict
from sidekick.web.tunnel import Admit, Dialer, Target, TunnelServer

_MAX_HEAD = 16 * 1024
_REALM = "Sidekick web policy"
# Hop-by-hop and proxy headers the client meant for us, not for the site.
_DROPPED = {b"proxy-authorization", b"proxy-connection", b"connection", b"keep-alive"}


class HttpProxy(TunnelServer):
    """An HTTP proxy that serves only the credentials it granted (see the module docstring)."""

    def __init__(self, admit: Admit, *, admit_timeout: float, dial: Dialer | None = None) -> None:
        super().__init__(admit, admit_timeout=admit_timeout, dial=dial)
        self._credentials: dict[str, str] = {}

    def grant(self) -> tuple[str, str]:
        """New random credentials (username, password), valid until :meth:`revoke`."""
        username, password = secrets.token_urlsafe(12), secrets.token_urlsafe(24)
        self._credentials[username] = password
        return username, password

    def revoke(self, username: str) -> None:
        """Refuse ``username`` from now on and end its connections. Idempotent."""
        self._credentials.pop(username, None)
        self.drop_owner(username)

    @property
    def granted(self) -> int:
        """Credentials in force."""
        return len(self._credentials)

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trusted: bool
    ) -> Target | None:
        request = self._request(await reader.readuntil(b"\r\n\r\n"), trusted)
        if isinstance(request, Target):
            return request
        await _answer(writer, *request)
        return None

    def _request(self, head: bytes, trusted: bool) -> Target | tuple[int, str, str]:
        """What the request head asks for, or the answer (code, reason, text) that refuses it."""
        if len(head) > _MAX_HEAD:
            return 431, "Request Header Fields Too Large", "The request's head is too large."
        line, *header_lines = head[:-4].split(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, "Bad Request", "This is an HTTP proxy; send CONNECT or GET http://…"
        method, target, version = parts
        headers = [header for text in header_lines if (header := _header(text)) is not None]
        if len(headers) != len(header_lines):
            return 400, "Bad Request", "A header line is malformed."
        owner = None if trusted else self._authorized(headers)
        if owner is None and not trusted:
            return 407, "Proxy Authentication Required", "Credentials are required."
        if method == b"CONNECT":
            address = _host_port(target.decode("ascii", errors="replace"), default_port=None)
            if address is None:
                return 400, "Bad Request", "CONNECT needs host:port."
            return Target(*address, owner=owner)
        url = urlsplit(target.decode("ascii", errors="replace"))
        if url.scheme.lower() != "http" or not url.netloc:
            return 400, "Bad Request", "Only http:// URLs in absolute form, or CONNECT for anything else."
        address = _host_port(url.netloc.rpartition("@")[2], default_port=80)
        if address is None:
            return 400, "Bad Request", "The URL has no usable host."
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        kept = [
            f"{name.decode('latin-1')}: {value.decode('latin-1')}"
            for name, value in headers
            if name.lower() not in _DROPPED
        ]
        request_line = f"{method.decode('ascii', 'replace')} {path} {version.decode('ascii', 'replace')}"
        first = "\r\n".join([request_line, *kept, "Connection: close", "", ""])
        return Target(*address, first_bytes=first.encode("latin-1"), owner=owner, response_head=_closing)

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The username of valid Basic credentials among ``headers``, else None."""
        for name, value in headers:
            if name.lower() != b"proxy-authorization":
                continue
            scheme, _, encoded = value.partition(b" ")
            if scheme.lower() != b"basic":
                return None
            try:
                username, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            expected = self._credentials.get(username)
            if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
                return username
            return None
        return None

    async def _refuse(self, writer: asyncio.StreamWriter, verdict: UrlVerdict) -> None:
        await _answer(writer, 403, "Forbidden", f"Sidekick's web policy refused this: {verdict.reason}")

    async def _unreachable(self, writer: asyncio.StreamWriter) -> None:
        await _answer(writer, 502, "Bad Gateway", "The site could not be reached.")

    async def _accepted(self, writer: asyncio.StreamWriter, target: Target) -> None:
        if not target.first_bytes:  # a tunnel; a plain request's answer comes from the site itself
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()


def _closing(head: bytes) -> bytes:
    """The site's answer head, saying the connection closes after it: the client must not send its
    next request (perhaps for another host, with that host's cookies) down this checked connection."""
    line, *rest = head[:-4].split(b"\r\n")
    kept = [text for text in rest if text.partition(b":")[0].strip().lower() not in _DROPPED]
    return b"\r\n".join([line, *kept, b"Connection: close", b"", b""])


def _header(line: bytes) -> tuple[bytes, bytes] | None:
    name, colon, value = line.partition(b":")
    if not colon or not name or name != name.strip():
        return None
    return name, value.strip()


def parse_listen(text: str) -> tuple[str, int]:
    """``SIDEKICK_GUARD_LISTEN``'s ``host:port`` (port 0: any free port) as (host, port)."""
    address = _host_port(text.strip(), default_port=None, lowest=0)
    if address is None:
        raise ConfigError(f"SIDEKICK_GUARD_LISTEN must be host:port, e.g. 10.0.0.5:3129 (got {text[:60]!r}).")
    if address[0] in ("0.0.0.0", "::", "*"):
        raise ConfigError(
            "SIDEKICK_GUARD_LISTEN must name the address the browser hosts connect to, not a wildcard "
            f"({address[0]}): the guard gives that address to each remote context."
        )
    return address


def _host_port(text: str, *, default_port: int | None, lowest: int = 1) -> tuple[str, int] | None:
    """``host:port`` / ``[v6]:port`` (or a bare host with ``default_port``) as (host, port)."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = _port(rest[1:], lowest)
    elif ":" in text:
        host, _, number = text.rpartition(":")
        port = _port(number, lowest)
    if not host or port is None:
        return None
    return host, port


def _port(text: str, lowest: int) -> int | None:
    return int(text) if text.isdigit() and lowest <= int(text) < 65536 else None


async def _answer(writer: asyncio.StreamWriter, code: int, reason: str, text: str) -> None:
    """Answer ``code`` with ``text`` and let the connection close (every answer here is final)."""
    body = (text + "\n").encode()
    extra = f'Proxy-Authenticate: Basic realm="{_REALM}"\r\n' if code == 407 else ""
    writer.write(
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
