"""Streamlit bindings: the process's Sidekick, this tab's session id, and its release on tab close.

Only this module and ``views.py`` import Streamlit. Live resources (browser contexts, runs, clients)
never go in ``st.session_state`` (a reconnecting tab gets its old ``session_state`` back while
Streamlit's session cache is rebuilt); they live in the core's registry, keyed by Streamlit's session
id. ``session_state`` holds plain data: the chat, the thread id, and the active run's event queue,
which always ends with ``Finished`` (a run cancelled by a session's end still emits it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import streamlit as st
from streamlit import runtime
from streamlit.errors import StreamlitSecretNotFoundError
from streamlit.runtime.scriptrunner import get_script_run_ctx

from sidekick.agent import RunHandle
from sidekick.config import Settings
from sidekick.core import Sidekick, current_sidekick, get_sidekick, new_thread_id
from sidekick.errors import SidekickError
from sidekick.events import Event, Finished, Screenshot


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


def sidekick(settings: Settings) -> Sidekick:
    """The process-wide core (started on first use with these settings, closed at exit)."""
    return get_sidekick(settings, is_active=is_active_session)


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




# -- this tab's conversation, as plain data in session_state ---------------------------------------
@dataclass
class Turn:
    """One user message and what came of it (events live; or just the reply, for reloaded history)."""

    user: str
    criteria: str = ""
    events: list[Event] = field(default_factory=list)
    reply: str | None = None


@dataclass
class TabState:
    """Everything the page shows, kept in ``st.session_state`` (plain data; no live resources)."""

    thread_id: str
    turns: list[Turn] = field(default_factory=list)
    run: RunHandle | None = None
    notice: str | None = None
    browse_shot: Screenshot | None = None

    def current(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def absorb(self, timeout: float = 0.0) -> list[Event]:
        """Move queued events of the active run into the current turn (waiting up to ``timeout`` for
        the first); end the run on Finished."""
        run, turn = self.run, self.current()
        if run is None or turn is None:
            return []
        new = run.drain(timeout)
        turn.events.extend(new)
        if any(isinstance(e, Finished) for e in new):
            self.run = None
        return new

    def start_turn(self, turn: Turn, run: RunHandle) -> None:
        # Keep screenshots of the new turn only (plus the last one shown): they are the heavy part.
        for old in self.turns:
            old.events = [e for e in old.events if not isinstance(e, Screenshot)]
        self.turns.append(turn)
        self.run = run


def tab_state(core: Sidekick) -> TabState:
    """This tab's state; on first load, the conversation named in the URL (``?thread=``)."""
    state: TabState | None = st.session_state.get("tab")
    if state is None:
        wanted = st.query_params.get("thread")
        state = TabState(thread_id=new_thread_id())
        if wanted:
            try:
                if core.conversation_exists(wanted):
                    state = TabState(thread_id=wanted, turns=load_turns(core, wanted))
                else:
                    state.notice = "That conversation was not found, so a new one was started."
            except SidekickError as exc:
                state.notice = f"That conversation could not be opened: {exc}"
        st.session_state["tab"] = state
    st.query_params["thread"] = state.thread_id
    return state


def load_turns(core: Sidekick, thread_id: str) -> list[Turn]:
    turns: list[Turn] = []
    for role, text in core.history(session_id(), thread_id):
        if role == "user":
            turns.append(Turn(user=text))
        elif turns:
            turns[-1].reply = text
    return turns


def switch_conversation(core: Sidekick, thread_id: str | None) -> TabState:
    """Open a past conversation (or a new one with None), stopping any run of this tab."""
    old: TabState | None = st.session_state.get("tab")
    if old is not None and old.run is not None:
        core.cancel_run(session_id())
    state = TabState(thread_id=thread_id or new_thread_id())
    if thread_id:
        state.turns = load_turns(core, thread_id)
    st.session_state["tab"] = state
    st.query_params["thread"] = state.thread_id
    return state
