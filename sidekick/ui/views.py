"""The dashboard's widgets. Called only from the script thread; talks to the core via the facade.

Layout: a sidebar (conversations, Reset, model and tools, resources) and two columns: the chat on
the left (each turn's steps in an ``st.status``, the evaluator's checklist, the answer or question)
and the browser on the right: while a run is live, the live view (the session's page as
Chromium's screencast sends it); otherwise the turn's step screenshots, the latest large. The
current turn, the streamed answer and the browser are one fragment (:class:`LiveArea`) that follows
a live run and reruns by itself while one is live; any click interrupts it and the rerun picks up
where it left off.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import streamlit as st

from sidekick import events as ev
from sidekick.agent.prompts import DEFAULT_CRITERIA
from sidekick.browser.screencast import Frame
from sidekick.errors import ConfigError, SidekickError
from sidekick.facade import MAX_CRITERIA_CHARS, MAX_MESSAGE_CHARS, ResourceReport, Sidekick
from sidekick.ui import bindings, stream
from sidekick.ui.tab import TabState, Turn

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_SECONDS = 0.25  # the longest a live turn waits for its run's next event (it wakes on one)
RESUME_SECONDS = 1.0  # while a run is live, how soon a stopped script follows it again
CONNECT_HELP = """
**Connect a model** — set these in the environment or in `.streamlit/secrets.toml`, then restart:

- OpenAI: `OPENAI_API_KEY = "sk-…"` (optionally `SIDEKICK_MODEL = "gpt-4.1-mini"`)
- Any OpenAI-compatible server (Ollama, vLLM, LM Studio, OpenRouter):
  `OPENAI_BASE_URL = "http://localhost:11434/v1"` and `SIDEKICK_MODEL = "llama3.1"`

The browser box works without a model.
"""


def friendly(action: Callable[[], T], doing: str) -> T | None:
    """Run a core call; show its failure as a message, never a traceback."""
    try:
        return action()
    except ConfigError as exc:
        st.error(f"Sidekick's configuration has a problem: {exc}", icon="⚠️")
    except SidekickError as exc:
        st.error(str(exc), icon="⚠️")
    except Exception:
        log.exception("Unexpected failure while %s", doing)
        st.error(f"Something went wrong while {doing}. The session still works; try again.", icon="⚠️")
    return None


def render() -> None:
    st.set_page_config(page_title="Sidekick", page_icon="🧭", layout="wide")
    if bindings.auth_configured() and not bindings.signed_in():
        sign_in_page()
        st.stop()
    if bindings.exposed_without_sign_in():
        st.warning(
            "This dashboard listens beyond this machine and nobody has to sign in: anyone who can reach it "
            "can use its browser and read every conversation. Configure `[auth]` (see the README).",
            icon="🔓",
        )
    started = friendly(bindings.sidekick, "starting Sidekick")
    if started is None:
        st.stop()
    core, warnings = started
    for warning in warnings:
        st.warning(warning, icon="⚠️")
    sid = bindings.session_id()
    state = bindings.tab_state(core)
    friendly(lambda: core.attach(sid, state.user, thread_id=state.thread_id), "registering this tab")
    if state.notice:
        st.toast(state.notice, icon="ℹ️")
        state.notice = None

    with st.sidebar:
        state = sidebar(core, sid, state)
        panel = st.container()

    chat_col, browser_col = st.columns([11, 9], gap="large")
    with browser_col:
        browse_box(core, sid, state)
        shot_slot = st.empty()
    with chat_col:
        st.markdown("### 🧭 Sidekick")
        history = st.container()
        live = st.empty()
        draft_slot = st.empty()  # the answer as the model writes it
        stop_slot = st.empty()
        prompt, criteria = chat_inputs(core, state)

    with history:
        for turn in state.turns[:-1]:
            render_turn(turn, live=False, download=partial(download_run, core, state, turn))
    if prompt is not None:
        start_turn(core, sid, state, prompt, criteria)
        if state.run is not None:
            st.rerun()  # redraw the input disabled and the Stop button up while it runs
    if state.run is not None and stop_slot.button("Stop", icon="⏹️", type="primary", help="Stop the run in progress."):
        friendly(lambda: core.cancel_run(sid), "stopping the run")
        state.absorb()  # the run has wound down: take its last events, then redraw with the input back
        st.rerun()

    state.absorb()
    with panel:  # filled after this run's actions, so it counts what they opened or freed
        resources_panel(core)
    watch_visibility(state)
    # Last: while a run is live the fragment follows it until it ends.
    LiveArea(core, sid, state, turn_slot=live, draft_slot=draft_slot, shot_slot=shot_slot).show()


# -- sidebar ---------------------------------------------------------------------------------------
def sign_in_page() -> None:
    st.title("🧭 Sidekick")
    st.markdown("Sign in to use Sidekick and see your conversations.")
    st.button("Sign in", icon="🔑", type="primary", on_click=st.login)


def sidebar(core: Sidekick, sid: str, state: TabState) -> TabState:
    st.title("🧭 Sidekick")
    st.caption("Your co-worker with a real browser.")
    if bindings.auth_configured():
        who, out = st.columns([3, 2], vertical_alignment="center")
        who.caption(f"Signed in as **{bindings.user_label()}**")
        out.button("Sign out", key="sign-out", on_click=st.logout, width="stretch")
    left, right = st.columns(2)
    if left.button("New chat", icon="✏️", width="stretch", help="Start a new conversation."):
        state = bindings.switch_conversation(core, None)
    if right.button("Reset", icon="🧹", width="stretch", help="Stop work, free this tab's browser, start anew."):
        freed = friendly(lambda: core.reset(sid), "resetting")  # stops the run too
        state = bindings.switch_conversation(core, None, stop=False)
        if freed is not None:
            st.toast(freed.describe(), icon="🧹")

    conversations = friendly(lambda: core.conversations(user=state.user), "listing conversations") or []
    if conversations:
        st.subheader("Conversations", divider="gray")
        for c in conversations[:20]:
            when = datetime.fromtimestamp(c.updated).strftime("%d %b %H:%M")
            current = c.thread_id == state.thread_id
            open_col, del_col = st.columns([6, 1], vertical_alignment="center")
            label = f"{'▸ ' if current else ''}{c.title}"
            if open_col.button(label, key=f"open-{c.thread_id}", help=when, width="stretch", type="tertiary"):
                state = bindings.switch_conversation(core, c.thread_id)
            if del_col.button("🗑", key=f"del-{c.thread_id}", help=f"Delete “{c.title}”", type="tertiary"):
                friendly(partial(core.delete_conversation, c.thread_id, user=state.user), "deleting the conversation")
                if current:
                    state = bindings.switch_conversation(core, None)
                st.rerun()

    if state.turns and state.run is None:
        thread_id, user = state.thread_id, state.user
        st.download_button(
            "Download conversation",
            data=lambda: core.export(thread_id, user=user).encode(),  # made when clicked, on the server's thread
            file_name=f"sidekick-{thread_id}.html",
            mime="text/html",
            icon="⬇️",
            on_click="ignore",
            width="stretch",
            help="One HTML file with every step, check, screenshot and answer; opens without a network.",
        )

    st.subheader("Model", divider="gray")
    if core.model_ready:
        st.caption(f"**{core.settings.model}** via {core.settings.openai_base_url or 'OpenAI'}")
        if core.settings.evaluator != core.settings.model:
            st.caption(f"Evaluator: **{core.settings.evaluator}**")
    else:
        st.warning("No model is connected.", icon="🔌")
        st.markdown(CONNECT_HELP)
    with st.expander("Tools"):
        for name, on, why in friendly(lambda: core.tools(sid), "listing tools") or []:
            st.markdown(f"{'✅' if on else '⛔'} `{name}`" + (f" — {why}" if why else ""))
    return state


def resources_panel(core: Sidekick) -> None:
    st.subheader("Resources", divider="gray")
    res: ResourceReport | None = friendly(core.resources, "reading resources")
    if res is None:
        return
    c1, c2 = st.columns(2)
    c1.metric("Sessions", res.sessions, help="Dashboard sessions alive in this server process.")
    c2.metric("Contexts", res.contexts, help="Open browser contexts, including one kept warm for the next session.")
    c1.metric(
        "Processes",
        res.processes.processes + res.mcp.processes,
        help="Chromium, Playwright-driver and MCP server processes of this server.",
    )
    c2.metric(
        "Memory",
        f"{res.processes.total_mb + res.mcp.total_mb:.0f} MB",
        help="Proportional memory (PSS) of those processes.",
    )
    mcp = f" · MCP {res.mcp.processes} processes, {res.mcp.total_mb:.0f} MB" if res.mcp.processes else ""
    st.caption(
        f"Server {res.server_mb:.0f} MB · browser launches {res.launches} · crashes {res.crashes}{mcp}"
        f" · live views {res.live_views}"
    )
    for ep in res.endpoints:
        state = f"connected · {ep.contexts} contexts" if ep.connected else f"not connected ({ep.problem or 'retrying'})"
        st.caption(f"{'🟢' if ep.connected else '🔴'} Browser server {ep.name}: {state}")


# -- chat ------------------------------------------------------------------------------------------
def chat_inputs(core: Sidekick, state: TabState) -> tuple[str | None, str]:
    ready = core.model_ready
    running = state.run is not None
    criteria = st.text_input(
        "Success criteria",
        value=st.session_state.get("criteria", DEFAULT_CRITERIA),
        key="criteria",
        max_chars=MAX_CRITERIA_CHARS,
        help="What the answer must achieve; one per line or sentence. The evaluator checks each.",
    )
    placeholder = "Ask Sidekick to do something…" if ready else "Connect a model to chat (see the sidebar)"
    prompt = st.chat_input(placeholder, disabled=not ready or running, max_chars=MAX_MESSAGE_CHARS)
    # The browser's chat box sends whitespace-only text: treat it as nothing typed.
    return (prompt if prompt and prompt.strip() else None), criteria


def start_turn(core: Sidekick, sid: str, state: TabState, prompt: str, criteria: str) -> None:
    if state.run is not None:
        st.toast("Sidekick is still working on your last message: wait for it, or press Stop.", icon="⏳")
        return
    handle = friendly(
        lambda: core.start_run(sid, prompt, criteria, state.thread_id, user=state.user), "starting the task"
    )
    if handle is not None:
        state.start_turn(Turn(user=prompt, criteria=criteria), handle)


class LiveArea:
    """The current turn, the answer being streamed and the browser's screen, drawn by one fragment.

    While a run is live the fragment follows it: it waits for the run's events and the live view's
    frames and redraws only what changed, as they come, and once the run ends it reruns the whole
    page (the history, the sidebar, the input back). The fragment reruns itself every
    ``RESUME_SECONDS`` while the page was drawn with a run live, so when something stops the
    script (Streamlit's toolbar Stop, a dropped connection) the next rerun picks up where it left
    off and the answer still appears without a click. Whatever drew last, the events are kept in
    ``session_state``: each loop compares what it drew with the state, not with what it took.
    """

    def __init__(
        self, core: Sidekick, sid: str, state: TabState, *, turn_slot: Any, draft_slot: Any, shot_slot: Any
    ) -> None:
        self.core, self.sid, self.state = core, sid, state
        self.turn_slot, self.draft_slot, self.shot_slot = turn_slot, draft_slot, shot_slot
        self.was_live = state.run is not None
        self.live_caption: Any | None = None  # the live view's caption slot, once the view is drawn
        self.live_url = ""  # the URL its caption shows
        self.live_steps: Steps | None = None  # the drawn turn's steps box, which new steps go to

    def show(self) -> None:
        st.fragment(self.follow, run_every=RESUME_SECONDS if self.was_live else None)()

    def follow(self) -> None:
        state = self.state
        state.absorb()
        if self.was_live and state.run is None:
            st.rerun()  # the run ended while nobody followed it: draw the page as it is now
        self.live_caption = None
        if state.run is None or state.hidden:
            self.core.live_release(self.sid)  # a browser may go on loading an image it no longer shows
        drawn_turn, drawn_draft = self.draw_turn(), self.draw_draft(None)
        current = state.current()
        drawn_all = len(current.events) if current is not None else 0
        self.draw_screen(None)
        while state.run is not None:
            # The run's next event wakes the wait at once. The live view's frames do not pass through
            # here: the tab's image streams them (ui/stream.py); asking for the newest one keeps the
            # view open, and its page address is the caption.
            frame = None if state.hidden else self.core.live_frame(self.sid)
            if frame is not None:
                self.draw_screen(frame)
            state.absorb(timeout=POLL_SECONDS)
            turn = state.current()
            events = turn.events if turn is not None else []
            shown = shown_events(events)
            if len(shown) != drawn_turn:
                new_steps = all(isinstance(e, STEP_EVENTS) for e in shown[drawn_turn:])
                if new_steps and self.live_steps is not None and drawn_turn < len(shown):
                    self.live_steps.add(events)  # only the new lines: the rest of the turn is as drawn
                    drawn_turn = len(shown)
                else:
                    drawn_turn = self.draw_turn()
            if len(events) != drawn_all:
                drawn_all, drawn_draft = len(events), self.draw_draft(drawn_draft)
        if self.was_live:
            st.rerun()  # refresh the sidebar (conversations, resources) and re-enable the input

    def draw_turn(self) -> int:
        """The current turn, all of it; returns how many of its events it showed (:func:`shown_events`)."""
        state, turn = self.state, self.state.current()
        self.live_steps = None
        with self.turn_slot.container():
            if turn is None:
                return 0
            live_now = state.run is not None
            download = None if live_now else partial(download_run, self.core, state, turn)
            self.live_steps = render_turn(turn, live=live_now, download=download)
            approval_buttons(self.core, self.sid, state)
        return len(shown_events(turn.events))

    def draw_draft(self, drawn: str | None) -> str:
        """The answer as the model writes it, if it is not ``drawn`` already; returns what is shown.
        (Every message to the tab costs it a render: a step's events must not redraw an unchanged
        draft.)"""
        turn = self.state.current()
        text = draft_of(turn.events) if turn is not None and self.state.run is not None else ""
        if text == drawn:
            return text
        if text:
            with self.draft_slot.container(), st.chat_message("assistant", avatar="🧭"):
                st.markdown(text + " ▌")
        else:
            self.draft_slot.empty()
        return text

    def draw_screen(self, frame: Frame | None) -> None:
        """The live view while a run is live and its first frame has come, else the turn's screenshots.

        The first frame of a fragment run draws the live view's one keyed container: a caption (the
        page's address, redrawn when it changes) and an ``<img>`` whose address is the session's
        MJPEG stream, drawn once: the browser shows each new frame in it by itself."""
        if frame is not None and self.state.run is not None and self.live_caption is None:
            ticket = self.core.live_ticket(self.sid)
            if ticket is not None:
                with self.shot_slot.container(key="live-view"):
                    self.live_caption, self.live_url = st.empty(), ""
                    st.html(
                        f'<img src="{html.escape(stream.live_path(ticket))}" alt="The browser, live" '
                        'style="width: 100%; display: block">'
                    )
        if self.live_caption is None:
            with self.shot_slot.container():
                screenshot_view(self.state)
            return
        # Once drawn, the live view stays for the fragment run: between two views of the session (one
        # ended unwatched, the stream opens the next) there is no frame for a moment, and nothing to redraw.
        if frame is not None and self.live_url != frame.url:
            self.live_url = frame.url
            self.live_caption.caption(f"🔴 **Live** — {frame.url}")


def download_run(core: Sidekick, state: TabState, turn: Turn) -> None:
    """A "Download run" button: the turn as one self-contained HTML page, made when clicked."""
    if turn.run_id is None:
        return
    run_id, thread_id, user = turn.run_id, state.thread_id, state.user

    def page() -> bytes:
        # Called on Streamlit's server thread when clicked: no st.* here, and a bounded core call.
        return core.export(thread_id, run_id=run_id, user=user).encode()

    st.download_button(
        "Download run",
        data=page,
        file_name=f"sidekick-{thread_id}-{run_id}.html",
        mime="text/html",
        icon="⬇️",
        on_click="ignore",
        key=f"download-{run_id}",
        type="tertiary",
    )


def render_turn(turn: Turn, *, live: bool, download: Callable[[], None] | None = None) -> Steps | None:
    """One turn; returns its steps' box (None: no steps shown), which a live turn's new steps go to."""
    with st.chat_message("user"):
        st.markdown(turn.user)
        if turn.criteria and turn.criteria != DEFAULT_CRITERIA:
            st.caption(f"Success criteria: {turn.criteria}")
    with st.chat_message("assistant", avatar="🧭"):
        if turn.reply is not None and not turn.events:
            st.markdown(turn.reply)
            return None
        drawn = steps(turn.events, live=live)
        outcome(turn.events)
        if download is not None:
            download()
    return drawn


STEP_EVENTS = (ev.ToolCall, ev.ToolResult, ev.Blocked)
"""The events a live turn's steps box draws by itself as they come (:meth:`Steps.add`)."""


def steps(events: list[ev.Event], *, live: bool) -> Steps | None:
    calls = [e for e in events if isinstance(e, ev.ToolCall)]
    blocked = [e for e in events if isinstance(e, ev.Blocked)]
    if not calls and not blocked and not live:
        return None
    failed = any(isinstance(e, ev.ErrorEvent | ev.Cancelled) for e in events)
    box = st.status(
        Steps.label(len(calls), len(blocked), live=live),
        state="running" if live else "error" if failed else "complete",
        expanded=live,
    )
    with box:
        drawn = Steps(box, st.container(), st.container(), live=live)
    drawn.add(events)
    return drawn


class Steps:
    """A turn's steps box: a slot per tool call (redrawn once when its result comes) above a line per
    blocked request. :meth:`add` draws only what is new, so a live turn's step costs a line or two,
    not the whole turn again."""

    def __init__(self, box: Any, calls: Any, blocked: Any, *, live: bool) -> None:
        self.box, self.calls, self.blocked, self.live = box, calls, blocked, live
        self.slots: dict[str, Any] = {}  # call id -> its slot
        self.finished: set[str] = set()  # calls drawn with their result
        self.blocked_drawn = 0

    @staticmethod
    def label(calls: int, blocked: int, *, live: bool) -> str:
        # Live, the label does not count: redrawing the box at each step cost the tab a render, and the
        # lines below count as they come.
        count = f"{calls} step{'s' if calls != 1 else ''}"
        return "Working…" if live else count + (f", {blocked} blocked" if blocked else "")

    def add(self, events: list[ev.Event]) -> None:
        calls = [e for e in events if isinstance(e, ev.ToolCall)]
        results = {e.call_id: e for e in events if isinstance(e, ev.ToolResult)}
        blocked = [e for e in events if isinstance(e, ev.Blocked)]
        for call in calls:
            result = results.get(call.call_id)
            if call.call_id in self.finished or (call.call_id in self.slots and result is None):
                continue
            if call.call_id not in self.slots:
                self.slots[call.call_id] = self.calls.empty()
            # One element per step (the tab renders each message it gets): the call, and once its
            # result comes, the result's first line under it in grey.
            mark = "⏳" if result is None else "✅" if result.ok else "⚠️"
            seconds = f" · {result.seconds:.1f} s" if result else ""
            line = f"{mark} **{call.name}** `{short_args(call.args)}`{seconds}"
            if result is not None:
                line += f"  \n:gray[{escape_directive(first_line(result.output))}]"
                self.finished.add(call.call_id)
            self.slots[call.call_id].markdown(line)
        for b in blocked[self.blocked_drawn :]:
            self.blocked.markdown(f"⛔ blocked `{b.url[:100]}` — {b.reason}")
        self.blocked_drawn = len(blocked)


# The page says when it is hidden or shown again (another browser tab, a minimised window) by pressing
# one of two hidden buttons: a hidden tab asks for no frames, so its session's screencast stops.
# Streamlit's "running" figure in the toolbar is redrawn by a timer five times a second while a script
# runs, and a live turn's fragment runs for the whole turn: each redraw repainted the whole page, about
# 3 % of a core per watching tab (30 tabs: a core and a half). The turn's own "Working…" box says a run
# is live, so the figure is hidden; the toolbar's Stop button stays.
VISIBILITY_HTML = """<style>.st-key-live-visibility { display: none; }
[data-testid="stStatusWidgetRunningIcon"] { display: none; }</style><script>
(() => {
  const press = (key) => document.querySelector(`.st-key-${key} button`)?.click();
  const tell = () => press(document.visibilityState === "hidden" ? "live-hidden" : "live-shown");
  if (!window.__sidekickVisibility) {
    window.__sidekickVisibility = true;
    document.addEventListener("visibilitychange", tell);
  }
  if (document.visibilityState === "hidden") tell();
})();
</script>"""


def watch_visibility(state: TabState) -> None:
    with st.container(key="live-visibility"):
        if st.button("Tab hidden", key="live-hidden"):
            state.hidden = True
        if st.button("Tab shown", key="live-shown"):
            state.hidden = False
        st.html(VISIBILITY_HTML, unsafe_allow_javascript=True)


def shown_events(events: list[ev.Event]) -> list[ev.Event]:
    """The events a turn's drawing shows (the streamed pieces and the screenshots are drawn elsewhere)."""
    return [e for e in events if not isinstance(e, ev.AnswerDelta | ev.Screenshot)]


def draft_of(events: list[ev.Event]) -> str:
    """The reply being streamed now: the pieces since the last step, review or answer."""
    pieces: list[str] = []
    for event in events:
        if isinstance(event, ev.AnswerDelta):
            pieces.append(event.text)
        elif not isinstance(event, ev.Screenshot | ev.Blocked):
            pieces = []
    return "".join(pieces)


def outcome(events: list[ev.Event]) -> None:
    for event in events:
        if isinstance(event, ev.Verdict):
            checklist(event)
    for event in events:
        match event:
            case ev.FinalAnswer():
                st.markdown(event.text)
                if not event.accepted:
                    st.caption("⚠️ Best effort: this answer did not pass every check.")
            case ev.Question():
                st.info(event.text, icon="❓")
            case ev.ErrorEvent():
                st.error(event.message, icon="⚠️")
            case ev.Cancelled():
                st.warning(event.reason, icon="⏹️")
            case ev.ApprovalAnswered():
                st.caption("👍 You approved it." if event.approved else "🚫 You denied it.")
            case ev.Finished():
                st.caption(f"{event.seconds:.1f} s · {event.model_calls} model calls · {event.tokens:,} tokens")


def checklist(verdict: ev.Verdict) -> None:
    title = f"Review {verdict.round}: {'passed' if verdict.success else 'sent back'}"
    with st.expander(("✅ " if verdict.success else "🔁 ") + title, expanded=False):
        for check in verdict.checks:
            st.markdown(f"{'✅' if check.met else '❌'} **{check.criterion}** — {check.evidence}")
        if not verdict.success and verdict.feedback:
            st.caption(f"Feedback: {verdict.feedback}")


def approval_buttons(core: Sidekick, sid: str, state: TabState) -> None:
    pending = state.pending_approval
    if pending is None:
        return
    st.warning(f"Sidekick wants to run **{pending.name}** `{short_args(pending.args, 300)}`", icon="✋")
    yes, no, _ = st.columns([1, 1, 3])
    decision: bool | None = None
    if yes.button("Approve", key=f"approve-{pending.call_id}", type="primary"):
        decision = True
    if no.button("Deny", key=f"deny-{pending.call_id}"):
        decision = False
    if decision is not None:
        handle = friendly(
            lambda: core.answer_approval(sid, state.thread_id, bool(decision), user=state.user), "resuming the run"
        )
        if handle is not None:
            state.run = handle
            st.rerun()


def short_args(args: dict[str, Any], limit: int = 80) -> str:
    text = json.dumps(args, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape_directive(text: str) -> str:
    """``text`` safe inside a Markdown colour directive (``:gray[…]``): its brackets escaped."""
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def first_line(text: str, limit: int = 160) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("<<<")), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- browser ---------------------------------------------------------------------------------------
def browse_box(core: Sidekick, sid: str, state: TabState) -> None:
    with st.form("browse", clear_on_submit=False, border=False):
        url_col, go_col = st.columns([4, 1], vertical_alignment="bottom")
        url = url_col.text_input("Web address", placeholder="https://example.com", key="url")
        opened = go_col.form_submit_button("Open", width="stretch")
    if opened:
        if state.run is not None:
            st.warning("Sidekick is using the browser right now; wait for it, or press Stop.", icon="⏳")
            return
        with st.spinner("Opening…"):
            shot = friendly(lambda: core.open_url(sid, url), "opening the page")
        if shot is not None:
            state.browse_shot = shot
            state.drop_screenshots()  # a manual visit is newer than any screenshot of past turns


def screenshot_view(state: TabState) -> None:
    turn = state.current()
    shots = [e for e in turn.events if isinstance(e, ev.Screenshot)] if turn else []
    if not shots:
        shot = state.browse_shot
        if shot is None:
            st.info("The browser's screen shows here while Sidekick works, or open a web address above.", icon="🌐")
            return
        shots = [shot]
    index = len(shots) - 1
    if len(shots) > 1 and state.run is None:
        index = st.slider("Screenshot", 1, len(shots), len(shots), key=f"shot-{len(shots)}") - 1
    shot = shots[index]
    st.caption(f"**{shot.title or 'Untitled'}** — {shot.url}")
    # PNG as it is: the default re-encodes every screenshot as JPEG on each redraw (30-190 ms each).
    st.image(shot.png, width="stretch", output_format="PNG")
    if len(shots) > 1:
        recent = shots[-6:]
        cols = st.columns(len(recent))
        for col, s in zip(cols, recent, strict=True):
            col.image(s.png, width="stretch", caption=(s.title or "")[:18], output_format="PNG")
