"""The dashboard's widgets. Called only from the script thread; talks to the core via the facade."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from sidekick.browser import Screenshot
from sidekick.core import Resources, Sidekick
from sidekick.errors import ConfigError, SidekickError
from sidekick.ui import session as bindings

log = logging.getLogger(__name__)
T = TypeVar("T")


def friendly(action: Callable[[], T], doing: str) -> T | None:
    """Run a core call; show its failure as a message, never a traceback."""
    try:
        return action()
    except SidekickError as exc:
        st.error(str(exc), icon="⚠️")
    except Exception:
        log.exception("Unexpected failure while %s", doing)
        st.error(f"Something went wrong while {doing}. The session still works; try again.", icon="⚠️")
    return None


def render() -> None:
    st.set_page_config(page_title="Sidekick", page_icon="🧭", layout="wide")
    try:
        settings, warnings = bindings.load_settings()
    except ConfigError as exc:
        st.error(f"Sidekick's configuration has a problem: {exc}", icon="⚠️")
        st.stop()
    for warning in warnings:
        st.warning(warning, icon="⚠️")
    core = friendly(lambda: bindings.sidekick(settings), "starting Sidekick")
    if core is None:
        st.stop()
    sid = bindings.session_id()

    with st.sidebar:
        st.title("🧭 Sidekick")
        st.caption("Your co-worker with a real browser.")
        if st.button("Reset", help="Close this session's browser and free its memory.", width="stretch"):
            freed = friendly(lambda: core.reset(sid), "resetting")
            if freed is not None:
                st.session_state.pop("screenshot", None)
                st.toast(freed.describe(), icon="🧹")
        panel = st.container()

    browse_box(core, sid)
    with panel:  # filled last, so it counts what this run just opened or freed
        resources_panel(core)


def browse_box(core: Sidekick, sid: str) -> None:
    st.subheader("Browser")
    with st.form("browse", clear_on_submit=False, border=False):
        url_col, go_col = st.columns([6, 1], vertical_alignment="bottom")
        url = url_col.text_input("Web address", placeholder="https://example.com", key="url")
        opened = go_col.form_submit_button("Open", width="stretch")
    if opened:
        with st.spinner("Opening…"):
            shot = friendly(lambda: core.open_url(sid, url), "opening the page")
        if shot is not None:
            st.session_state["screenshot"] = shot
    screenshot_view(st.session_state.get("screenshot"))


def screenshot_view(shot: Screenshot | None) -> None:
    if shot is None:
        st.info("Open a web address to see this session's browser here.", icon="🌐")
        return
    st.caption(f"**{shot.title or 'Untitled'}** — {shot.url}")
    st.image(shot.png, width="stretch")


def resources_panel(core: Sidekick) -> None:
    st.divider()
    st.subheader("Resources")
    res: Resources | None = friendly(core.resources, "reading resources")
    if res is None:
        return
    c1, c2 = st.columns(2)
    c1.metric("Sessions", res.sessions, help="Dashboard sessions alive in this server process.")
    c2.metric("Contexts", res.contexts, help="Open browser contexts, including one kept warm for the next session.")
    c1.metric("Processes", res.processes.processes, help="Chromium and Playwright-driver processes of this server.")
    c2.metric("Memory", f"{res.processes.total_mb:.0f} MB", help="Proportional memory (PSS) of those processes.")
    st.caption(f"Server {res.server_mb:.0f} MB · browser launches {res.launches} · crashes {res.crashes}")
