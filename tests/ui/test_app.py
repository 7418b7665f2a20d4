"""The dashboard script under ``AppTest``: the real core (loop thread, browser pool, SQLite) in this
process, the fake model over real HTTP, and no websocket.

A run blocks the script (it drains events until ``Finished``), so one ``at.run(timeout=...)`` covers a
whole turn. The core is a process singleton whose settings are fixed when it starts, so every test
starts its own (with its own environment and data folder) and closes it afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Button, Expander

import sidekick.facade
from sidekick.config import Settings
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import verdict

pytestmark = pytest.mark.timeout(180)

APP = Path(__file__).resolve().parents[2] / "sidekick" / "ui" / "page.py"
RUN_TIMEOUT = 60.0  # one turn, including a Chromium launch, on a loaded 2-core machine


def _close_core() -> None:
    sidekick.facade.close_sidekick()


@pytest.fixture(autouse=True)
def _own_core(llm: FakeOpenAI) -> Iterator[None]:
    """Each test starts a process-wide core of its own (its settings come from that test's
    environment) and closes it; one left by an earlier module is closed first."""
    _close_core()
    llm.reset()
    yield
    _close_core()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, llm: FakeOpenAI) -> pytest.MonkeyPatch:
    """Only the settings a test sets: a private data folder, the fake model, local pages allowed."""
    for name, _, _ in Settings.documented():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIDEKICK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SIDEKICK_ALLOW_PRIVATE_NETWORK", "1")
    monkeypatch.setenv("SIDEKICK_MODEL_RETRIES", "0")
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    return monkeypatch


@pytest.fixture
def app(env: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    def make(**query: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
        # Replaces st.secrets wholesale, so a developer's .streamlit/secrets.toml never leaks in.
        at.secrets = {"SIDEKICK_TESTS": "isolated"}
        at.query_params.update(query)
        return at.run()

    return make


def send(at: AppTest, text: str) -> AppTest:
    return at.chat_input[0].set_value(text).run(timeout=RUN_TIMEOUT)


def button(at: AppTest, label: str) -> Button:
    return next(b for b in at.button if b.label == label)


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def assert_no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_a_message_runs_and_its_answer_appears(app: Callable[..., AppTest], llm: FakeOpenAI) -> None:
    llm.worker(Reply.text("The answer is 42."))
    llm.evaluator(verdict(True))
    at = app()
    thread = at.query_params["thread"]

    send(at, "What is the answer?")

    assert_no_traceback(at)
    assert not at.error, [e.value for e in at.error]
    assert "What is the answer?" in texts(at) and "The answer is 42." in texts(at)
    reviews = [x.label for x in at.get("expander") if isinstance(x, Expander) and "Review" in x.label]
    assert reviews == ["✅ Review 1: passed"]
    assert any("model calls" in c.value for c in at.caption)
    assert not at.chat_input[0].disabled, "the input is enabled again once the run has finished"
    assert at.query_params["thread"] == thread
    assert "▸ What is the answer?" in [b.label for b in at.sidebar.button], "listed under Conversations"
    assert len(llm.requests) == 2


def test_blank_input_starts_no_run(app: Callable[..., AppTest], llm: FakeOpenAI) -> None:
    at = app()
    for blank in ("", "   \n\t "):
        send(at, blank)
        assert_no_traceback(at)
        assert not at.chat_message, "no turn was added"
        assert not [b for b in at.button if b.label == "Stop"]
        assert not at.chat_input[0].disabled
    assert llm.requests == []


def test_blank_input_shows_no_error(app: Callable[..., AppTest]) -> None:
    at = send(app(), "   ")
    assert not at.error, [e.value for e in at.error]


def test_a_model_error_is_a_message_not_a_traceback(app: Callable[..., AppTest], llm: FakeOpenAI) -> None:
    llm.worker(Reply.error(500))
    at = app()

    send(at, "Hello?")

    assert_no_traceback(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "500" in errors[0] and "Traceback" not in errors[0], errors
    assert "Hello?" in texts(at), "the user's message stays in the chat"
    assert not at.chat_input[0].disabled, "they can try again"


def test_reset_frees_the_browser_and_clears_the_chat(
    app: Callable[..., AppTest], llm: FakeOpenAI, site: LocalSite
) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("The secret number is 4217."))
    llm.evaluator(verdict(True))
    at = app()
    before = at.query_params["thread"]
    send(at, "What is the secret number?")
    assert "The secret number is 4217." in texts(at)
    assert at.image, "the browser's screenshot is shown"

    button(at, "Reset").click().run(timeout=RUN_TIMEOUT)

    assert_no_traceback(at)
    toasts = [t.value for t in at.toast]
    assert len(toasts) == 1 and toasts[0].startswith("Freed 1 browser context"), toasts
    assert not at.chat_message and not at.image
    assert at.query_params["thread"] != before
    # The old conversation is kept, only no longer the current one.
    assert "What is the secret number?" in [b.label for b in at.sidebar.button]


def test_without_a_model_the_page_says_how_to_connect_one(app: Callable[..., AppTest], env: pytest.MonkeyPatch) -> None:
    env.delenv("OPENAI_BASE_URL")
    at = app()

    assert_no_traceback(at)
    assert at.chat_input[0].disabled
    assert at.chat_input[0].placeholder.startswith("Connect a model")
    assert any("Connect a model" in m.value for m in at.sidebar.markdown)
    assert [w.value for w in at.sidebar.warning] == ["No model is connected."]


def test_an_unknown_thread_starts_a_new_conversation(app: Callable[..., AppTest]) -> None:
    at = app(thread="0123456789abcdef")

    assert_no_traceback(at)
    assert [t.value for t in at.toast] == ["That conversation was not found, so a new one was started."]
    assert at.query_params["thread"] not in ("", "0123456789abcdef")
    assert not at.chat_message


def test_a_malformed_setting_is_a_clear_configuration_error(
    app: Callable[..., AppTest], env: pytest.MonkeyPatch
) -> None:
    env.setenv("SIDEKICK_MAX_EVALUATIONS", "lots")
    at = app()

    assert_no_traceback(at)
    assert [e.value for e in at.error] == [
        "Sidekick's configuration has a problem: SIDEKICK_MAX_EVALUATIONS must be a whole number (got 'lots')."
    ]
    assert not at.chat_input, "nothing else renders"
    assert sidekick.facade.current_sidekick() is None, "no core was started"


@pytest.mark.parametrize(("choice", "written"), [("Approve", True), ("Deny", False)])
def test_a_side_effect_waits_for_approve_or_deny(
    app: Callable[..., AppTest], llm: FakeOpenAI, tmp_path: Path, choice: str, written: bool
) -> None:
    llm.worker(
        Reply.tool_call("write_file", {"path": "note.txt", "content": "hello"}),
        Reply.text("Saved." if written else "Not saved."),
    )
    llm.evaluator(verdict(True))
    at = send(app(), "Save a note")
    assert_no_traceback(at)
    assert any("write_file" in w.value for w in at.warning), "the approval request is shown"
    assert not list(tmp_path.rglob("note.txt")), "nothing ran before the decision"

    button(at, choice).click().run(timeout=RUN_TIMEOUT)

    assert_no_traceback(at)
    assert ("Saved." if written else "Not saved.") in texts(at)
    files = list(tmp_path.rglob("note.txt"))
    assert (files[0].read_text() == "hello") if written else not files
