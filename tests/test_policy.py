from __future__ import annotations

import asyncio
import socket

import pytest

from sidekick.errors import ConfigError
from sidekick.web import policy
from sidekick.web.policy import UrlPolicy, UrlVerdict, check_url, check_url_static, default_resolver

# The fake DNS: no test touches the network.
DNS: dict[str, list[str]] = {
    "example.com": ["93.184.216.34"],
    "www.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "evil-example.com": ["8.8.8.8"],
    "xn--bcher-kva.example": ["8.8.8.8"],  # bücher.example
    "intranet.example": ["10.0.0.5"],
    "split.example": ["93.184.216.34", "192.168.1.10"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "v6local.example": ["2001:4860:4860::8888", "fe80::1%eth0"],
    "rebind.example": ["169.254.169.254"],
    "empty.example": [],
    "garbage.example": ["not-an-address"],
}


class FakeResolver:
    def __init__(self, table: dict[str, list[str]] = DNS) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


async def check(url: str, policy: UrlPolicy | None = None) -> tuple[UrlVerdict, list[str]]:
    resolver = FakeResolver()
    verdict = await check_url(url, policy or UrlPolicy(), resolver)
    return verdict, resolver.calls


ALLOWED = [
    ("https://example.com/path?q=1#frag", "example.com"),
    ("HTTPS://EXAMPLE.COM./", "example.com"),  # uppercase, trailing dot
    ("https://www.example.com:8443/", "www.example.com"),
    ("http:example.com", "example.com"),  # Chromium accepts missing and extra slashes
    ("http:\\\\example.com\\path", "example.com"),
    ("  https://exa\tmple.com/\n", "example.com"),  # Chromium drops tabs, newlines, edge spaces
    ("http://example.com\\@127.0.0.1/", "example.com"),  # \ ends the host: this goes to example.com
    ("https://ex%61mple.com/", "example.com"),
    ("https://bücher.example/", "xn--bcher-kva.example"),  # IDNA
    ("https://BÜCHER.example/", "xn--bcher-kva.example"),
    ("ws://example.com/socket", "example.com"),
    ("wss://example.com/socket", "example.com"),
    ("http://93.184.216.34/", "93.184.216.34"),
    ("http://8.8.8.8:80/", "8.8.8.8"),
    ("http://0x5db8d822/", "93.184.216.34"),  # a public address in hex is still public
    ("http://[2001:4860:4860::8888]/", "2001:4860:4860::8888"),
    ("http://[::ffff:8.8.8.8]/", "::ffff:808:808"),  # mapped, NAT64, 6to4 of public addresses are public
    ("http://[64:ff9b::8.8.8.8]/", "64:ff9b::808:808"),
    ("http://[2002:808:808::1]/", "2002:808:808::1"),
]


@pytest.mark.parametrize(("url", "host"), ALLOWED)
async def test_allowed(url: str, host: str) -> None:
    verdict, _ = await check(url)
    assert verdict == UrlVerdict(True, "allowed", host)


def test_about_blank_is_the_only_about_url() -> None:
    assert check_url_static("about:blank", UrlPolicy()) == UrlVerdict(True, "allowed: about:blank", None)
    assert not check_url_static("about:srcdoc", UrlPolicy()).allowed
    assert not check_url_static("about:blank#x", UrlPolicy()).allowed


DENIED = [
    # Schemes and malformed URLs
    ("", "empty URL"),
    ("  \t ", "empty URL"),
    ("not a url", "is not an absolute URL"),
    ("example.com/page", "is not an absolute URL"),
    ("file:///etc/passwd", "the file: scheme is not allowed"),
    ("FILE:///etc/passwd", "the file: scheme is not allowed"),
    ("data:text/html,<script>alert(1)</script>", "the data: scheme"),
    ("javascript:alert(document.cookie)", "the javascript: scheme"),
    ("chrome://settings", "the chrome: scheme"),
    ("chrome-extension://abcdef/page.html", "the chrome-extension: scheme"),
    ("about:config", "the about: scheme"),
    ("blob:https://example.com/0b1c-44", "the blob: scheme"),
    ("filesystem:https://example.com/temporary/x", "the filesystem: scheme"),
    ("view-source:https://example.com/", "the view-source: scheme"),
    ("ftp://example.com/file", "the ftp: scheme"),
    ("http://", "has no host"),
    ("https:///?q", "has no host"),
    ("http://exa mple.com/", "not a valid host name"),
    ("http://a..b/", "not a valid host name"),
    ("http://ex%ffample.com/", "not a valid host name"),
    ("http://example.com:99999/", "invalid port"),
    ("http://example.com:8o/", "invalid port"),
    ("http://[::1/", "unclosed ["),
    ("http://[::1]x/", "invalid port"),
    ("http://[not-ipv6]/", "not a valid IPv6 address"),
    ("https://faß.de/", "xn-- form"),  # Python and Chromium encode ß differently
    # Credentials
    ("https://user:pass@example.com/", "credentials"),
    ("https://user@example.com/", "credentials"),
    ("http://127.0.0.1\\@example.com/", "127.0.0.1 is a loopback address"),  # Chromium goes to 127.0.0.1
    # IPv4 in every spelling Chromium accepts
    ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
    ("http://127.0.0.1./", "127.0.0.1 is a loopback address"),
    ("http://127.1/", "127.1 (127.0.0.1) is a loopback address"),
    ("http://2130706433/", "(127.0.0.1) is a loopback address"),
    ("http://0x7f000001/", "(127.0.0.1) is a loopback address"),
    ("http://0x7f.1/", "(127.0.0.1) is a loopback address"),
    ("http://017700000001/", "(127.0.0.1) is a loopback address"),
    ("http://0177.0.0.01/", "(127.0.0.1) is a loopback address"),
    ("http://%31%32%37.0.0.1/", "(127.0.0.1) is a loopback address"),
    ("http://１２７．０．０．１/", "(127.0.0.1) is a loopback address"),  # full-width digits and dots
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local (cloud metadata) address"),
    ("http://2852039166/", "2852039166 (169.254.169.254) is a link-local (cloud metadata) address"),
    ("http://0xA9FEA9FE/", "(169.254.169.254) is a link-local (cloud metadata)"),
    ("http://0xa9.0xfe.0xa9.0xfe/", "(169.254.169.254) is a link-local (cloud metadata)"),
    ("http://0251.0376.0251.0376/", "(169.254.169.254) is a link-local (cloud metadata)"),
    ("http://0251.0xfe.43518/", "(169.254.169.254) is a link-local (cloud metadata)"),
    ("http://169.16689662/", "(169.254.169.254) is a link-local (cloud metadata)"),
    ("http://169.254.1.1/", "is a link-local address"),
    ("http://10.1/", "10.1 (10.0.0.1) is a private address"),
    ("http://172.16.5.4/", "is a private address"),
    ("http://192.168.1.1:8080/", "is a private address"),
    ("http://100.64.0.1/", "is a carrier-grade NAT address"),
    ("http://100.100.100.200/", "is a carrier-grade NAT (cloud metadata) address"),
    ("http://0/", "0 (0.0.0.0) is an unspecified address"),
    ("http://0.0.0.0:8000/", "is an unspecified address"),
    ("http://0.1.2.3/", "is an unspecified address"),
    ("http://224.0.0.1/", "is a multicast address"),
    ("http://255.255.255.255/", "is a broadcast address"),
    ("http://240.0.0.1/", "is a reserved address"),
    ("http://198.18.0.1/", "is a benchmarking address"),
    ("http://192.0.2.1/", "is a documentation address"),
    ("http://256.0.0.1/", "not a valid host name (a number is out of range)"),
    ("http://1.2.3.4.5/", "not a valid host name (too many numeric parts)"),
    ("http://127..1/", "not a valid host name"),
    ("http://09.0.0.1/", "not a valid host name"),  # not octal
    ("http://foo.1/", "not a valid host name"),  # ends in a number, so it must be an address
    # IPv6 literals
    ("http://[::1]/", "[::1] is a loopback address"),
    ("http://[::1]:8080/", "[::1] is a loopback address"),
    ("http://[::]/", "is an unspecified address"),
    ("http://[::ffff:127.0.0.1]/", "is an IPv4-mapped address for 127.0.0.1, a loopback address"),
    ("http://[::ffff:169.254.169.254]/", "IPv4-mapped address for 169.254.169.254, a link-local (cloud"),
    ("http://[::ffff:a9fe:a9fe]/", "IPv4-mapped address for 169.254.169.254, a link-local (cloud"),
    ("http://[0:0:0:0:0:FFFF:A9FE:A9FE]/", "IPv4-mapped address for 169.254.169.254"),
    ("http://[::127.0.0.1]/", "IPv4-compatible address for 127.0.0.1, a loopback address"),
    ("http://[64:ff9b::10.0.0.1]/", "NAT64 address for 10.0.0.1, a private address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64 address for 169.254.169.254, a link-local (cloud metadata)"),
    ("http://[2002:a9fe:a9fe::1]/", "6to4 address for 169.254.169.254, a link-local (cloud metadata)"),
    ("http://[2002:c0a8:101::]/", "6to4 address for 192.168.1.1, a private address"),
    ("http://[fe80::1]/", "is a link-local address"),
    ("http://[fe80::1%25eth0]/", "[fe80::1%25eth0] is a link-local address"),  # zone id
    ("http://[fc00::1]/", "is a private address"),
    ("http://[fd00:ec2::254]/", "is a private (cloud metadata) address"),
    ("http://[ff02::1]/", "is a multicast address"),
    ("http://[fec0::1]/", "is a site-local address"),
    ("http://[2001:db8::1]/", "is a documentation address"),
    ("http://[64:ff9b:1::1]/", "is a reserved address"),
    # Names that mean this machine or the local network
    ("http://localhost/", "localhost is a loopback (localhost) name"),
    ("http://LOCALHOST.:3000/", "localhost is a loopback (localhost) name"),
    ("http://app.localhost/", "app.localhost is a loopback (localhost) name"),
    ("http://printer.local/", "printer.local is a local-network (.local) name"),
    ("http://metadata.google.internal/computeMetadata/v1/", "is a private-network (.internal) name"),
    ("http://router.home.arpa/", "is a home-network (.home.arpa) name"),
    # Names judged by what they resolve to: every address counts
    ("http://intranet.example/", "intranet.example resolves to 10.0.0.5, a private address"),
    ("http://INTRANET.example./", "intranet.example resolves to 10.0.0.5, a private address"),
    ("http://split.example/", "split.example resolves to 192.168.1.10, a private address"),
    ("http://mapped.example/", "resolves to [::ffff:7f00:1], an IPv4-mapped address for 127.0.0.1"),
    ("http://v6local.example/", "resolves to [fe80::1%eth0], a link-local address"),
    ("http://rebind.example/", "resolves to 169.254.169.254, a link-local (cloud metadata) address"),
    ("http://nowhere.example/", "could not resolve nowhere.example (Name or service not known)"),
    ("http://1.2.3.foo/", "could not resolve 1.2.3.foo"),  # a name, since it does not end in a number
    ("http://empty.example/", "could not resolve empty.example (no addresses)"),
    ("http://garbage.example/", "could not resolve garbage.example (the resolver returned 'not-an-address')"),
]


@pytest.mark.parametrize(("url", "reason"), DENIED)
async def test_denied(url: str, reason: str) -> None:
    verdict, _ = await check(url)
    assert not verdict.allowed
    assert verdict.reason.startswith("blocked: ")
    assert reason in verdict.reason


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://0xA9FEA9FE/", "169.254.169.254"),
        ("http://127.1/", "127.0.0.1"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe"),
        ("http://[fe80::1%25eth0]/", "fe80::1"),
        ("http://Intranet.Example./", "intranet.example"),
        ("file:///etc/passwd", None),
    ],
)
async def test_denied_verdicts_name_the_canonical_host(url: str, host: str | None) -> None:
    verdict, _ = await check(url)
    assert (verdict.allowed, verdict.host) == (False, host)


@pytest.mark.parametrize(
    "url",
    ["http://93.184.216.34/", "http://[::1]/", "about:blank", "file:///x", "http://localhost/", "http://a@b/"],
)
async def test_only_host_names_are_resolved(url: str) -> None:
    _, calls = await check(url)
    assert calls == []


async def test_the_resolver_gets_the_normalized_name() -> None:
    _, calls = await check("https://WWW.Example.COM./")
    assert calls == ["www.example.com"]


async def test_localhost_is_denied_without_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_dns(host: str) -> list[str]:
        raise AssertionError(f"resolved {host}")

    monkeypatch.setattr(policy, "default_resolver", no_dns)
    verdict = await check_url("http://localhost:8501/", UrlPolicy())
    assert verdict.reason == "blocked: localhost is a loopback (localhost) name"


async def test_a_resolver_that_hangs_is_a_denial() -> None:
    async def hang(host: str) -> list[str]:
        await asyncio.sleep(60)
        return ["93.184.216.34"]

    verdict = await check_url("https://slow.example/", UrlPolicy(), hang, timeout=0.01)
    reason = "blocked: could not resolve slow.example (no answer within 0.01s)"
    assert verdict == UrlVerdict(False, reason, "slow.example")


async def test_a_broken_resolver_is_a_denial() -> None:
    async def broken(host: str) -> list[str]:
        raise RuntimeError("resolver bug")

    verdict = await check_url("https://example.com/", UrlPolicy(), broken)
    assert verdict.reason == "blocked: could not resolve example.com (resolver bug)"


async def test_default_resolver_reads_literal_addresses_without_dns() -> None:
    assert await default_resolver("127.0.0.1") == ["127.0.0.1"]


def test_the_static_check_does_everything_but_dns() -> None:
    assert check_url_static("http://intranet.example/", UrlPolicy()) == UrlVerdict(True, "allowed", "intranet.example")
    assert not check_url_static("http://0x7f.1/", UrlPolicy()).allowed
    assert not check_url_static("http://app.localhost/", UrlPolicy()).allowed


# --- Allow- and block-lists -------------------------------------------------------------------------

ONLY_EXAMPLE = UrlPolicy(allowed_domains=("example.com",))
NO_EXAMPLE = UrlPolicy(blocked_domains=("example.com",))
BOTH = UrlPolicy(allowed_domains=("example.com", "python.org"), blocked_domains=("www.example.com",))


@pytest.mark.parametrize(
    ("policy", "url", "allowed", "reason"),
    [
        (ONLY_EXAMPLE, "https://example.com/", True, "allowed"),
        (ONLY_EXAMPLE, "https://www.example.com/", True, "allowed"),
        (ONLY_EXAMPLE, "https://bücher.example/", False, "is not on the allowed list (example.com)"),
        (ONLY_EXAMPLE, "https://evil-example.com/", False, "evil-example.com is not on the allowed list"),
        (ONLY_EXAMPLE, "https://example.com.evil.test/", False, "is not on the allowed list"),
        (ONLY_EXAMPLE, "http://93.184.216.34/", False, "93.184.216.34 is an IP address"),
        (ONLY_EXAMPLE, "http://[2001:4860:4860::8888]/", False, "is an IP address"),
        (ONLY_EXAMPLE, "http://10.0.0.1/", False, "is a private address"),  # the more useful reason
        (NO_EXAMPLE, "https://example.com/", False, "example.com is on the blocked list (example.com)"),
        (NO_EXAMPLE, "https://WWW.EXAMPLE.COM./", False, "www.example.com is on the blocked list (example.com)"),
        (NO_EXAMPLE, "https://evil-example.com/", True, "allowed"),
        (NO_EXAMPLE, "http://93.184.216.34/", True, "allowed"),  # lists match names, not addresses
        (BOTH, "https://example.com/", True, "allowed"),
        (BOTH, "https://www.example.com/", False, "on the blocked list (www.example.com)"),
        (BOTH, "https://www.python.org/", False, "could not resolve"),  # lists do not skip the DNS check
        (BOTH, "https://evil.test/", False, "not on the allowed list (example.com, python.org)"),
    ],
)
async def test_domain_lists(policy: UrlPolicy, url: str, allowed: bool, reason: str) -> None:
    verdict, _ = await check(url, policy)
    assert verdict.allowed is allowed
    assert reason in verdict.reason


def test_a_long_allow_list_is_abbreviated_in_reasons() -> None:
    many = UrlPolicy(allowed_domains=tuple(f"site{i}.example" for i in range(8)))
    reason = check_url_static("https://other.example/", many).reason
    assert reason.endswith("(site0.example, site1.example, site2.example, site3.example, site4.example, … 3 more)")


LOCAL = UrlPolicy(allow_private_network=True)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/", "http://localhost:8000/", "http://[::1]/", "http://10.1/", "http://intranet.example/"],
)
async def test_allow_private_network_allows_local_addresses_without_dns(url: str) -> None:
    verdict, calls = await check(url, LOCAL)
    assert verdict.allowed
    assert calls == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "the file: scheme"),
        ("https://user:pass@127.0.0.1/", "credentials"),
        ("http://1.2.3.4.5/", "not a valid host name"),
    ],
)
async def test_allow_private_network_keeps_the_other_rules(url: str, reason: str) -> None:
    verdict, _ = await check(url, LOCAL)
    assert not verdict.allowed
    assert reason in verdict.reason


async def test_allow_private_network_with_lists() -> None:
    local_only = UrlPolicy(allow_private_network=True, allowed_domains=("localhost",))
    assert (await check("http://localhost:8000/", local_only))[0].allowed
    assert not (await check("http://127.0.0.1:8000/", local_only))[0].allowed


# --- Parsing domain lists ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "domains"),
    [
        ("", ()),
        ("  , ", ()),
        ("example.com", ("example.com",)),
        ("Example.COM, .python.org  docs.rs\nfoo.example.", ("example.com", "python.org", "docs.rs", "foo.example")),
        ("a.example,a.example A.EXAMPLE", ("a.example",)),
        ("https://example.com, http://python.org/", ("example.com", "python.org")),
        ("bücher.example", ("xn--bcher-kva.example",)),
        ("xn--bcher-kva.example", ("xn--bcher-kva.example",)),
        ("under_score.example", ("under_score.example",)),
    ],
)
def test_parse_domains(text: str, domains: tuple[str, ...]) -> None:
    assert UrlPolicy.parse_domains(text) == domains


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://x/y", "'http://x/y' is not a domain name: write bare host names such as 'example.com'"),
        ("a b/c", "'b/c' is not a domain name"),
        ("*.example.com", "'*.example.com' is not a domain name"),
        ("example.com:8080", "'example.com:8080' is not a domain name"),
        ("user@example.com", "'user@example.com' is not a domain name"),
        ("a..example", "'a..example' is not a domain name (only letters"),
        ("exa!mple.com", "'exa!mple.com' is not a domain name"),
        ("faß.de", "xn-- form"),
        ("10.0.0.1", "'10.0.0.1' looks like an IP address; domain lists match host names only."),
        ("0x7f.1", "looks like an IP address"),
        ("::1", "'::1' is not a domain name"),
        ("https://", "'https://' is not a domain name"),
        ("x" * 64 + ".example", "is not a domain name"),
    ],
)
def test_parse_domains_rejects_junk(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        UrlPolicy.parse_domains(text)
    assert message in str(raised.value)


def test_policies_normalize_domains_however_they_are_built() -> None:
    built = UrlPolicy(allowed_domains=("Example.COM.", "example.com"), blocked_domains=(".Bücher.example",))
    assert built.allowed_domains == ("example.com",)
    assert built.blocked_domains == ("xn--bcher-kva.example",)
    with pytest.raises(ConfigError):
        UrlPolicy(blocked_domains=("http://x/y",))
    with pytest.raises(TypeError, match="parse_domains"):
        UrlPolicy(allowed_domains="example.com")  # type: ignore[arg-type]
