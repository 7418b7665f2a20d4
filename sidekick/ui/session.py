"""Streamlit bindings: the process's Sidekick, this tab's session id, and its release on tab close.

Only this module and ``views.py`` import Streamlit. Live resources never go in ``st.session_state``
(a reconnecting tab gets its old ``session_state`` back while Streamlit's session cache is rebuilt);
they live in the core's registry, keyed by Streamlit's session id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st
from streamlit import runtime
from streamlit.errors import StreamlitSecretNotFoundError
from streamlit.runtime.scriptrunner import get_script_run_ctx

from sidekick.config import Settings
from sidekick.core import Sidekick, get_sidekick


@dataclass(frozen=True)
class SessionHandle:
    """This tab's key into the core's session registry."""

    id: str


def is_active_session(session_id: str) -> bool:
    """The watchdog's question; documented thread-safe by Streamlit."""
    return runtime.exists() and runtime.get_instance().is_active_session(session_id)


def load_settings() -> tuple[Settings, list[str]]:
    """Settings from the environment, then root-level Streamlit secrets; warnings to show, if any."""
    warnings: list[str] = []
    secrets: dict[str, object] = {}
    try:
        secrets = {k: v for k, v in st.secrets.to_dict().items() if not isinstance(v, dict)}
    except StreamlitSecretNotFoundError as exc:
        if "No secrets found" not in str(exc):
            warnings.append(f"`.streamlit/secrets.toml` could not be read, so it was ignored: {exc}")
    except Exception as exc:  # a malformed secrets file must never take the page down
        warnings.append(f"`.streamlit/secrets.toml` could not be read, so it was ignored: {exc}")
    return Settings.load(os.environ, secrets), warnings


def sidekick(settings: Settings) -> Sidekick:
    """The process-wide core (started on first use with these settings, closed at exit)."""
    return get_sidekick(settings, is_active=is_active_session)


def _release(handle: SessionHandle) -> None:
    # Runs on Streamlit's server event-loop thread about a second after the tab disconnects:
    # submit the cleanup and return, never wait here.
    get_sidekick().end_session(handle.id)


@st.cache_resource(scope="session", on_release=_release, show_spinner=False)
def _handle() -> SessionHandle:
    ctx = get_script_run_ctx()
    if ctx is None:  # pragma: no cover - only outside `streamlit run`
        raise RuntimeError("No Streamlit session.")
    return SessionHandle(ctx.session_id)


def session_id() -> str:
    return _handle().id


