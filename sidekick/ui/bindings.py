"""Streamlit bindings: the process's Sidekick, this tab's session id and its release on tab close,
and the tab's :class:`~sidekick.ui.tab.TabState` in ``st.session_state``.

Only this module and ``views.py`` import Streamlit. Live resources (browser contexts, runs, clients)
never go in ``st.session_state`` (a reconnecting tab gets its old ``session_state`` back while
Streamlit's session cache is rebuilt); they live in the core's registry, keyed by Streamlit's session
id. ``session_state`` holds plain data (``ui/tab.py``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import streamlit as st
from streamlit import runtime
from streamlit.errors import StreamlitSecretNotFoundError
from streamlit.runtime.scriptrunner import get_script_run_ctx

from sidekick.config import Settings
from sidekick.errors import SidekickError
from sidekick.events import Screenshot
from sidekick.facade import Sidekick, current_sidekick, get_sidekick, new_thread_id
from sidekick.ui.tab import TabState, Turn


@dataclass(frozen=True)
class SessionHandle:
    """This tab's key into the core's session registry."""

    id: str


def is_active_session(session_id: str) -> bool:
    """The watchdog's question; documented thread-safe by Streamlit. Without a runtime (AppTest, a
    script) nothing can be judged, so the session counts as active."""
    return not runtime.exists() or runtime.get_instance().is_active_session(session_id)


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


def sidekick() -> tuple[Sidekick, list[str]]:
    """The process-wide core and warnings about its settings. Settings are read once, when the core
    starts (a malformed one raises ConfigError, so the page can say which); later reruns reuse it."""
    core = current_sidekick()
    if core is not None:
        return core, []
    settings, warnings = load_settings()
    return get_sidekick(settings, is_active=is_active_session), warnings


def _release(handle: SessionHandle) -> None:
    # Runs on Streamlit's server event-loop thread about a second after the tab disconnects:
    # submit the cleanup and return, never wait here.
    core = current_sidekick()
    if core is not None:
        core.end_session(handle.id)


@st.cache_resource(scope="session", on_release=_release, show_spinner=False)
def _handle() -> SessionHandle:
    ctx = get_script_run_ctx()
    if ctx is None:  # pragma: no cover - only outside `streamlit run`
        raise RuntimeError("No Streamlit session.")
    return SessionHandle(ctx.session_id)


def session_id() -> str:
    return _handle().id


# -- sign-in ---------------------------------------------------------------------------------------
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def auth_configured() -> bool:
    """``[auth]`` in the secrets: the dashboard requires sign-in with Streamlit's ``st.login``."""
    try:
        return "auth" in st.secrets
    except Exception:  # no or unreadable secrets: load_settings has said so already
        return False


def signed_in() -> bool:
    return bool(st.user.is_logged_in)


def user_label() -> str:
    """Who is signed in, as the sidebar shows it."""
    return str(st.user.get("name") or st.user.get("email") or st.user.get("sub") or "you")


def current_user() -> str | None:
    """The signed-in user's id (their OIDC subject), or None when nobody signs in (the local user)."""
    if not auth_configured():
        return None
    return f"oidc:{st.user.get('sub')}"


def exposed_without_sign_in() -> bool:
    """The server listens beyond this machine and nobody has to sign in."""
    address = str(st.get_option("server.address") or "")
    return not auth_configured() and address not in LOOPBACK




def tab_state(core: Sidekick) -> TabState:
    """This tab's state; on first load, the conversation named in the URL (``?thread=``)."""
    state: TabState | None = st.session_state.get("tab")
    user = current_user()
    if state is not None and state.user != user:  # signed out and in as someone else: start afresh
        state = None
    if state is None:
        wanted = st.query_params.get("thread")
        state = TabState(thread_id=new_thread_id(), user=user)
        if wanted:
            try:
                if core.conversation_exists(wanted, user=user):
                    state = TabState(thread_id=wanted, user=user, turns=load_turns(core, wanted, user))
                else:
                    state.notice = "That conversation was not found, so a new one was started."
            except SidekickError as exc:
                state.notice = f"That conversation could not be opened: {exc}"
        st.session_state["tab"] = state
    st.query_params["thread"] = state.thread_id
    return state


def load_turns(core: Sidekick, thread_id: str, user: str | None) -> list[Turn]:
    """The conversation as it looked live, from its run record: steps, checks, the last turn's
    screenshots. Turns from before the record existed come back as their text."""
    recorded: list[Turn] = []
    for run in core.record(thread_id, user=user):
        started = run.started
        if run.opens_turn or not recorded:
            user, criteria = (started.message, started.criteria) if started is not None else ("", "")
            recorded.append(Turn(user=user, criteria=criteria, events=list(run.events), run_id=run.run_id))
        else:  # resumed after an approval: the same turn goes on
            recorded[-1].events.extend(run.events)
    texts: list[Turn] = []
    for role, text in core.history(thread_id, user=user):
        if role == "user":
            texts.append(Turn(user=text))
        elif texts:
            texts[-1].reply = text
    turns = texts[: max(0, len(texts) - len(recorded))] + recorded
    for old in turns[:-1]:  # as live: only the newest turn keeps its screenshots
        old.events = [e for e in old.events if not isinstance(e, Screenshot)]
    return turns


def switch_conversation(core: Sidekick, thread_id: str | None, *, stop: bool = True) -> TabState:
    """Open a past conversation (or a new one with None); ``stop`` ends this tab's run first (Reset
    has already stopped it)."""
    old: TabState | None = st.session_state.get("tab")
    if stop and old is not None and old.run is not None:
        core.cancel_run(session_id())
    user = current_user()
    state = TabState(thread_id=thread_id or new_thread_id(), user=user)
    if thread_id:
        state.turns = load_turns(core, thread_id, user)
    st.session_state["tab"] = state
    st.query_params["thread"] = state.thread_id
    # The browser and workspace follow the conversation (New chat: a clean browser). A failure here
    # is shown by the next render's attach, which tries again.
    with contextlib.suppress(SidekickError):
        core.attach(session_id(), user, thread_id=state.thread_id)
    return state
