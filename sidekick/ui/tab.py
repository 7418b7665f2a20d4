"""One tab's conversation as plain data: its turns and the run it follows.

A :class:`TabState` lives in ``st.session_state`` (see ``bindings.tab_state``), so it holds no live
resources: events, text and the handle of the run in progress, whose queue always ends with
``Finished`` (a run cancelled by a session's end still emits it). Nothing here imports Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidekick.events import AnswerDelta, ApprovalNeeded, Event, Finished, RunStarted, Screenshot
from sidekick.runs import RunHandle


@dataclass
class Turn:
    """One user message and what came of it (events live; or just the reply, for reloaded history)."""

    user: str
    criteria: str = ""
    events: list[Event] = field(default_factory=list)
    reply: str | None = None
    run_id: str | None = None  # the run that opened the turn, for its download


@dataclass
class TabState:
    """Everything the page shows, kept in ``st.session_state`` (plain data; no live resources)."""

    thread_id: str
    user: str | None = None  # who is signed in (None: the local user, nobody signs in)
    turns: list[Turn] = field(default_factory=list)
    run: RunHandle | None = None
    notice: str | None = None
    browse_shot: Screenshot | None = None
    hidden: bool = False  # the browser tab is hidden (its page said so): it watches no live view

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
            # The streamed pieces were for watching; the answer itself is in the turn now.
            turn.events = [e for e in turn.events if not isinstance(e, AnswerDelta)]
        return new

    def start_turn(self, turn: Turn, run: RunHandle) -> None:
        self.drop_screenshots()  # the new turn's screenshots replace them
        turn.run_id = run.run_id
        self.turns.append(turn)
        self.run = run

    def drop_screenshots(self) -> None:
        """Forget past turns' screenshots: they are the heavy part, and the browser moved on."""
        for turn in self.turns:
            turn.events = [e for e in turn.events if not isinstance(e, Screenshot)]

    @property
    def pending_approval(self) -> ApprovalNeeded | None:
        """The side-effecting call the current turn is paused on, if it is (no run follows it)."""
        turn = self.current()
        if turn is None or self.run is not None:
            return None
        for event in reversed(turn.events):
            if isinstance(event, ApprovalNeeded):
                return event
            if isinstance(event, RunStarted):
                return None
        return None
