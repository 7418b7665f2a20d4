"""Browser tools: the model drives the session's Chromium page through these.

The model sees a page as Playwright's AI-mode accessibility snapshot (``snapshot``; see
:mod:`sidekick.browser.snapshot`), one line per element with a ref, and acts by ref or, as before,
by visible text or CSS: ``click``, ``type_text``, ``select_option``, ``set_checked``, ``hover``,
``press_key``, ``scroll``, ``drag``, ``wait_for``, ``handle_dialog``; ``navigate`` and ``back``;
``read_page`` and ``list_links`` for reading long text; ``screenshot``. Everything acts on the
session's *current* page (a page the site opens, a popup or a ``target=_blank`` link, becomes
current by itself; see :class:`~sidekick.browser.SessionBrowser`).

- ``tools`` builds them; ``targets`` turns a ref, text or CSS into one element (or a plain error
  listing the candidates); ``watch`` sees what an action set off and waits for exactly that.
- An acting tool's result names the element it acted on (role, name, ref), says what changed (same
  page, new URL, new tab, a dialog, a download refused) and ends with a fresh bounded snapshot.
- The session's browser may be replaced under the tools (after a crash, an idle close or a reset),
  so they never hold one: every call asks an async getter for it. A call's action is bounded by
  ``tool_timeout_seconds``, and afterwards, on success and on failure alike while the page is
  usable, a :class:`~sidekick.events.Screenshot` is emitted through ``ctx.emit``.
- Every failure reaches the model as a plain :class:`~sidekick.errors.ToolError`. Snapshots and page
  text come from the site, so they go out wrapped by :func:`~sidekick.tools.base.untrusted`; titles
  and element names shown outside that block are flattened to one line with its markers defused.
"""

from sidekick.tools.browser.tools import available, build

__all__ = ["available", "build"]
