"""Which URLs the browser may load: one verdict for every navigation, request, popup and WebSocket.

The browser code calls :func:`check_url` from its ``context.route`` handler (and before a navigation
it starts itself) and aborts whatever is not allowed, showing :attr:`UrlVerdict.reason` to the model.

A URL is allowed when all of these hold:

- its scheme is ``http``, ``https``, ``ws`` or ``wss`` (or the URL is exactly ``about:blank``), and it
  carries no credentials;
- its host, read the way Chromium reads it (percent-decoding, IDNA, and every IPv4 spelling: ``2130706433``,
  ``0x7f.1``, ``0177.0.0.1``, ``127.1`` …), is not on the blocked list and, when there is an allow-list, is
  on it (subdomains included; an IP-address host never matches a list);
- unless ``allow_private_network`` is set, the host is not a ``localhost``/``.local``/``.internal`` name,
  and neither the literal address nor any address the name resolves to is loopback, private,
  link-local (cloud metadata), CGNAT, multicast, reserved or otherwise non-public. IPv6 addresses that
  embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by that address.

Limits worth knowing: this module judges URLs and the addresses a name resolves to; it connects to
nothing. Chromium would resolve the name again on its own, so a DNS server that answers differently the
second time (DNS rebinding) could still reach a private address; ``sidekick.guard`` closes that by
making every connection through its proxy, which connects only to the address it checked.
:func:`check_url_static` skips resolution entirely and so only catches literal addresses and names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from sidekick.errors import ConfigError

__all__ = ["Resolver", "UrlPolicy", "UrlVerdict", "check_url", "check_url_static", "default_resolver"]

Resolver = Callable[[str], Awaitable[list[str]]]
"""Host name -> the IP addresses it resolves to, as strings."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

WEB_SCHEMES = ("http", "https", "ws", "wss")


@dataclass(frozen=True)
class UrlVerdict:
    allowed: bool
    reason: str
    """Short and specific, for the user and the model: which rule fired, on what."""
    host: str | None
    """The host as the browser would use it (lowercase, IDNA, canonical IP), if the URL got that far."""


@dataclass(frozen=True, kw_only=True)
class UrlPolicy:
    allowed_domains: tuple[str, ...] = ()
    """If non-empty, only these domains and their subdomains may be loaded."""
    blocked_domains: tuple[str, ...] = ()
    """Never loaded, with their subdomains; beats ``allowed_domains``."""
    allow_private_network: bool = False
    """Allow loopback, private, link-local … addresses and ``localhost`` names (local development, tests)."""

    def __post_init__(self) -> None:
        # Hosts are compared in normalized form, so entries must be too, however the policy was built.
        for name in ("allowed_domains", "blocked_domains"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} must be a tuple of domains; use UrlPolicy.parse_domains() on text.")
            object.__setattr__(self, name, tuple(dict.fromkeys(_domain_entry(d) for d in value)))

    @classmethod
    def parse_domains(cls, text: str) -> tuple[str, ...]:
        """Read a comma- or space-separated list of domains, e.g. ``"example.com, .Python.org"``."""
        entries = [entry for entry in re.split(r"[\s,]+", text) if entry]
        return tuple(dict.fromkeys(_domain_entry(entry) for entry in entries))


async def default_resolver(host: str) -> list[str]:
    """The system resolver (``getaddrinfo``), each address once, in the order given."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_url(
    url: str,
    policy: UrlPolicy,
    resolve: Resolver | None = None,
    *,
    timeout: float = 3.0,
) -> UrlVerdict:
    """Decide whether the browser may load ``url``, resolving its host name (``default_resolver``)."""
    verdict, name = _check(url, policy)
    if name is None:
        return verdict
    try:
        async with asyncio.timeout(timeout):
            addresses = await (resolve or default_resolver)(name)
    except TimeoutError:
        return _deny(f"could not resolve {name} (no answer within {timeout:g}s)", name)
    except Exception as error:  # a resolver failure of any kind must deny, never allow
        detail = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return _deny(f"could not resolve {name} ({detail})", name)
    if not addresses:
        return _deny(f"could not resolve {name} (no addresses)", name)
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return _deny(f"could not resolve {name} (the resolver returned {text!r})", name)
        problem = _non_public(address)
        if problem:
            return _deny(f"{name} resolves to {_show(address)}, {problem}", name)
    return verdict


def check_url_static(url: str, policy: UrlPolicy) -> UrlVerdict:
    """:func:`check_url` without DNS: host names are allowed on their name alone."""
    return _check(url, policy)[0]


# --- The static checks --------------------------------------------------------------------------------


class _Denied(Exception):
    def __init__(self, reason: str, host: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.host = host


def _deny(reason: str, host: str | None) -> UrlVerdict:
    return UrlVerdict(False, f"blocked: {reason}", host)


def _check(url: str, policy: UrlPolicy) -> tuple[UrlVerdict, str | None]:
    """The verdict without DNS, and the host name still to resolve (None when the verdict is final)."""
    try:
        return _check_or_raise(url, policy)
    except _Denied as denied:
        return _deny(denied.reason, denied.host), None


_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):(.*)", re.DOTALL)
# Chromium ignores these anywhere in a URL, and control characters and spaces at either end.
_IGNORED = str.maketrans("", "", "\t\n\r")
_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))


def _check_or_raise(url: str, policy: UrlPolicy) -> tuple[UrlVerdict, str | None]:
    text = url.strip(_C0_AND_SPACE).translate(_IGNORED)
    if not text:
        raise _Denied("empty URL")
    match = _SCHEME.fullmatch(text)
    if match is None:
        raise _Denied(f"{_clip(text)} is not an absolute URL (it needs a scheme such as https://)")
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "about" and rest == "blank":
        return UrlVerdict(True, "allowed: about:blank", None), None
    if scheme not in WEB_SCHEMES:
        raise _Denied(f"the {scheme}: scheme is not allowed (only {', '.join(WEB_SCHEMES)})")

    # As in Chromium (WHATWG URL), any run of / or \ may follow the scheme, and \ ends the authority:
    # "http://127.0.0.1\@example.com" goes to 127.0.0.1.
    authority = re.split(r"[/\\?#]", rest.lstrip("/\\"), maxsplit=1)[0]
    if "@" in authority:
        raise _Denied("URLs with credentials (user:password@) are not allowed")
    raw_host = _split_port(authority)
    if not raw_host:
        raise _Denied(f"{_clip(text)} has no host")

    address, host = _parse_host(raw_host)
    if address is not None:
        if not policy.allow_private_network:
            problem = _non_public(address)
            if problem:
                raise _Denied(f"{_show_literal(raw_host, address)} is {problem}", host)
        if policy.allowed_domains:
            raise _Denied(f"{host} is an IP address; only the allowed domains may be loaded", host)
        return UrlVerdict(True, "allowed", host), None

    if not policy.allow_private_network:
        kind = _local_name(host)
        if kind:
            raise _Denied(f"{host} is a {kind} name", host)
    blocked = _match(host, policy.blocked_domains)
    if blocked:
        raise _Denied(f"{host} is on the blocked list ({blocked})", host)
    if policy.allowed_domains and not _match(host, policy.allowed_domains):
        raise _Denied(f"{host} is not on the allowed list ({_listing(policy.allowed_domains)})", host)
    return UrlVerdict(True, "allowed", host), None if policy.allow_private_network else host


def _split_port(authority: str) -> str:
    """The host part of ``host:port`` or ``[v6]:port``; a malformed port denies."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _Denied(f"{_clip(authority)} is not a valid host (unclosed [)")
        host, after = authority[: end + 1], authority[end + 1 :]
        port = after[1:] if after.startswith(":") else after
        valid = after == "" or after.startswith(":")
    else:
        host, _, port = authority.partition(":")
        valid = True
    if not valid or not re.fullmatch(r"[0-9]*", port) or (port and int(port) > 65535):
        raise _Denied(f"{_clip(authority)} has an invalid port")
    return host


_LABEL = re.compile(r"[a-z0-9_\-]{1,63}")
# IDNA 2003 (Python's codec) and Chromium's UTS 46 disagree on these: "faß.de" is fass.de to Python but
# xn--fa-hia.de to Chromium. Rather than guess, such names must be written in their xn-- form.
_DEVIATIONS = frozenset("ßς\u200c\u200d")


def _parse_host(raw: str) -> tuple[IPAddress | None, str]:
    """(address, host) for an IP literal, (None, host) for a name; an invalid host denies."""
    if raw.startswith("["):
        inner = unquote(raw[1:-1]).partition("%")[0]  # a zone id ("%25eth0") says nothing about the address
        try:
            v6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise _Denied(f"{_clip(raw)} is not a valid IPv6 address") from None
        return v6, str(v6)
    try:
        host = _normalize_name(unquote(raw, errors="strict"))
        v4 = _parse_ipv4(host)
    except (UnicodeError, ValueError) as error:
        raise _Denied(f"{_clip(raw)} is not a valid host name ({error})") from None
    return (v4, str(v4)) if v4 is not None else (None, host)


def _normalize_name(name: str) -> str:
    """Lowercase, IDNA (xn--), without the trailing dot; raises ValueError when not a valid host name."""
    if not name.isascii():
        if _DEVIATIONS.intersection(name):
            raise ValueError("ß, ς and zero-width joiners are ambiguous in IDNA; write the name in its xn-- form")
        name = name.encode("idna").decode("ascii")  # also maps full-width digits and dots
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if _ends_in_number(name):
        return name  # an IPv4 address in some spelling; _parse_ipv4 judges it
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError("only letters, digits, '-' and '_' in dot-separated labels")
    return name


def _ends_in_number(name: str) -> bool:
    """WHATWG's rule: a host whose last label is numeric must be an IPv4 address (or nothing)."""
    last = name.rsplit(".", 1)[-1]
    return bool(re.fullmatch(r"[0-9]+|0x[0-9a-f]*", last))


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Every IPv4 spelling Chromium accepts (WHATWG's IPv4 parser); None for a name."""
    if not _ends_in_number(host):
        return None
    parts = host.split(".")
    if len(parts) > 4:
        raise ValueError("too many numeric parts")
    numbers = [_ipv4_number(part) for part in parts]
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        raise ValueError("a number is out of range")
    value = last + sum(n << (8 * (3 - i)) for i, n in enumerate(leading))
    return ipaddress.IPv4Address(value)


def _ipv4_number(part: str) -> int:
    if part.startswith("0x"):
        digits, base, pattern = part[2:], 16, r"[0-9a-f]*"
    elif len(part) > 1 and part.startswith("0"):
        digits, base, pattern = part[1:], 8, r"[0-7]+"
    else:
        digits, base, pattern = part, 10, r"[0-9]+"
    if not re.fullmatch(pattern, digits):
        raise ValueError(f"{part!r} is not a number")
    return int(digits or "0", base)


_LOCAL_NAMES = {
    "localhost": "loopback (localhost)",
    "local": "local-network (.local)",
    "internal": "private-network (.internal)",
    "home.arpa": "home-network (.home.arpa)",
}


def _local_name(host: str) -> str | None:
    for suffix, kind in _LOCAL_NAMES.items():
        if host == suffix or host.endswith("." + suffix):
            return kind
    return None


def _match(host: str, domains: Iterable[str]) -> str | None:
    return next((d for d in domains if host == d or host.endswith("." + d)), None)


def _listing(domains: tuple[str, ...], limit: int = 5) -> str:
    shown = ", ".join(domains[:limit])
    return shown + (f", … {len(domains) - limit} more" if len(domains) > limit else "")


def _clip(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


# --- Addresses ----------------------------------------------------------------------------------------


_net = ipaddress.ip_network
_CLOUD_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
# Ranges whose name the ipaddress flags do not give (most of them count as is_private there).
_NAMED_NETWORKS = (
    (_net("0.0.0.0/8"), "unspecified"),  # connecting to 0.0.0.0 reaches this machine
    (_net("255.255.255.255/32"), "broadcast"),
    (_net("100.64.0.0/10"), "carrier-grade NAT"),
    (_net("198.18.0.0/15"), "benchmarking"),
    (_net("192.0.2.0/24"), "documentation"),
    (_net("198.51.100.0/24"), "documentation"),
    (_net("203.0.113.0/24"), "documentation"),
    (_net("2001:db8::/32"), "documentation"),
    (_net("3fff::/20"), "documentation"),
)
_NAT64 = _net("64:ff9b::/96")


def _non_public(address: IPAddress) -> str | None:
    """Why ``address`` must not be reached ("a loopback address"), or None for a public address."""
    embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if embedded is not None:
        how, v4 = embedded
        problem = _non_public(v4)
        return problem and f"{how} address for {v4}, {problem}"
    kind = _kind(address)
    if kind is None:
        return None
    if address in _CLOUD_METADATA:
        kind += " (cloud metadata)"
    article = "an" if kind[0] in "aeiou" else "a"
    return f"{article} {kind} address"


def _kind(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    for network, kind in _NAMED_NETWORKS:
        if address in network:
            return kind
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address a connection to ``address`` really reaches (or may), and how it is embedded."""
    if address.ipv4_mapped is not None:
        return "an IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "a 6to4", address.sixtofour
    if address in _NAT64:
        return "a NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, but not :: and ::1
        return "an IPv4-compatible", ipaddress.IPv4Address(int(address))
    return None


def _show(address: IPAddress) -> str:
    return str(address) if address.version == 4 else f"[{address}]"


def _show_literal(raw: str, address: IPAddress) -> str:
    """An IPv4 address with the spelling it was given in when that differs (``0x7f.1 (127.0.0.1)``)."""
    if address.version == 6:
        return raw
    return str(address) if raw.lower().rstrip(".") == str(address) else f"{raw} ({address})"


def _domain_entry(entry: str) -> str:
    """One entry of a domain list, normalized like a URL's host; junk raises ConfigError."""
    name = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", "", entry.strip())
    if name.endswith("/") and name != entry.strip():
        name = name[:-1]  # "https://example.com/" is a common way of writing example.com
    name = name.lstrip(".")
    hint = "write bare host names such as 'example.com' (subdomains are included)"
    if not name or re.search(r"[/:@?#\\*\[\]%\s]", name):
        raise ConfigError(f"{entry!r} is not a domain name: {hint}.")
    try:
        host = _normalize_name(name)
    except (UnicodeError, ValueError) as error:
        raise ConfigError(f"{entry!r} is not a domain name ({error}): {hint}.") from None
    if _ends_in_number(host):
        raise ConfigError(f"{entry!r} looks like an IP address; domain lists match host names only.")
    return host
