"""A session's browser state, kept so a context can be closed and opened again as it was.

:class:`BrowserState` is what survives a context: Playwright's ``storage_state`` (cookies and each
origin's local storage) and the URL of the page the session was on. The idle timer, a Chromium crash
and a move to another browser endpoint all close or lose a context; the session saves its state while
it is alive and opens the next context from it (:meth:`~sidekick.browser.pool.BrowserPool.new_session_browser`
takes ``state=``), so it comes back signed in, on the same page. Reset and New chat delete it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BrowserState:
    """Cookies and local storage (Playwright's ``storage_state`` dict) and the current page's URL."""

    storage: dict[str, Any] = field(default_factory=dict)
    url: str | None = None

    @property
    def empty(self) -> bool:
        return not self.storage.get("cookies") and not self.storage.get("origins") and not self.url

    def to_json(self) -> str:
        return json.dumps({"storage": self.storage, "url": self.url}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> BrowserState:
        """Parse what :meth:`to_json` wrote; anything else raises ``ValueError``."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("storage", {}), dict):
            raise ValueError("not a saved browser state")
        url = data.get("url")
        return cls(storage=data.get("storage") or {}, url=url if isinstance(url, str) and url else None)
