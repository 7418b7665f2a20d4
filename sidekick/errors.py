"""Sidekick's one exception tree.

Everything Sidekick raises on purpose derives from :class:`SidekickError`, and its message is written
for the person using the dashboard or the CLI: it says what happened and what to do, never a
traceback. The UI shows ``str(error)`` as it is.

    SidekickError
    ├── ConfigError            a setting is missing or malformed
    ├── RuntimeStoppedError    the loop thread is stopped or dead; nothing can be submitted
    ├── RuntimeCallError       a call into the loop thread timed out or came from the loop itself
    ├── BrowserError           the browser could not do what was asked
    │   ├── BrowserUnavailableError  no Chromium could be found or launched
    │   ├── BrowserCrashedError      Chromium died under an in-flight call
    │   ├── NavigationError          bad URL, unreachable site, blocked by policy, timeout
    │   └── BrowserTimeoutError      a browser call did not finish within its time limit
    ├── SessionClosedError     the session was reset or ended while the call was on its way
    ├── StoreError             the conversation store is closed or cannot be used
    ├── RunInProgressError     a second run was started while one is running
    ├── ModelError             the model server failed, refused or timed out
    └── ToolError              a tool failed; the agent turns it into data the model can read
"""

from __future__ import annotations


class SidekickError(Exception):
    """Base of every error Sidekick raises on purpose; ``str()`` is a user-facing message."""


class ConfigError(SidekickError):
    pass


class RuntimeStoppedError(SidekickError):
    pass


class RuntimeCallError(SidekickError):
    pass


class BrowserError(SidekickError):
    pass


class BrowserUnavailableError(BrowserError):
    pass


class BrowserCrashedError(BrowserError):
    pass


class NavigationError(BrowserError):
    pass


class SessionClosedError(SidekickError):
    pass


class BrowserTimeoutError(BrowserError):
    pass


class StoreError(SidekickError):
    pass


class RunInProgressError(SidekickError):
    pass


class ModelError(SidekickError):
    pass


class ToolError(SidekickError):
    pass
