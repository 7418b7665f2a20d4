"""URLs as people and models type them: :func:`normalize_url` makes one an http(s) address or says
plainly what is wrong with it. The web policy (:mod:`sidekick.web.policy`) judges the result."""

from __future__ import annotations

import re

from sidekick.errors import NavigationError


def normalize_url(text: str) -> str:
    """What a person or a model typed, made into an http(s) URL ("example.com/x" gets https://),
    or a NavigationError that says what is wrong."""
    url = text.strip()
    if not url:
        raise NavigationError("Type a web address, for example https://example.com.")
    if len(url) > 4096:
        raise NavigationError("That address is too long (over 4096 characters).")
    if any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in url):
        raise NavigationError("A web address cannot contain spaces or control characters.")
    scheme = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):(?!\d)", url)
    if scheme is None:
        url = "https://" + url
    elif scheme.group(1).lower() not in ("http", "https"):
        raise NavigationError(f"Only http and https addresses can be opened (not {scheme.group(1)[:20]}:).")
    elif not url.lower().startswith(f"{scheme.group(1).lower()}://"):
        raise NavigationError(f"{text.strip()[:80]!r} is not a web address; write it like https://example.com.")
    host = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    if not host or host.startswith(":"):
        raise NavigationError(f"{text.strip()[:80]!r} is not a web address; write it like https://example.com.")
    return url

