"""Every way ``python -m sidekick`` ends (regressions): exit 0, 1 or 2 with one line, never a traceback.

Each case runs the real entry point in a subprocess against the fake model over real HTTP.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.commands import REPO_ROOT, run_module
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.runs import verdict
from tests.support.waiting import poll

PREFIXES = ("SIDEKICK_", "OPENAI_", "SERPER_", "PUSHOVER_")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, llm: FakeOpenAI) -> Iterator[dict[str, str]]:
    """Only this test's settings reach the subprocess (run_module adds os.environ to them)."""
    for key in list(os.environ):
        if key.startswith(PREFIXES):
            monkeypatch.delenv(key)
    yield {
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-test-secret",
        "SIDEKICK_DATA_DIR": str(tmp_path / "data"),
        "SIDEKICK_MODEL_RETRIES": "0",
        "SIDEKICK_MODEL_TIMEOUT": "30",
    }


def start(env: dict[str, str], *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sidekick", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


# Regression (bug 4, Ctrl-C): a KeyboardInterrupt while waiting for events printed "Stopped." and
# exited 130, a code the CLI did not document (0 / 1 / 2). Now it stops the run and exits 1 with
# one "error:" line.
def test_ctrl_c_during_a_run_stops_it_and_exits_1_with_one_line(env: dict[str, str], llm: FakeOpenAI) -> None:
    llm.worker(Reply.hang())
    with start(env, "ask", "Take your time") as proc:
        try:
            assert poll(lambda: llm.requests, timeout=60), "the run reached the model"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 1
    assert one_error_line(err) == "error: Stopped."


# Regression (bug 4, deadline): the CLI waited for events with no deadline of its own. With a model
# that never answers, the run's own turn timeout ends it: exit 1 with that one line. (The CLI's
# extra deadline, turn timeout + 30 s, only matters if a run fails to report its end at all, which
# cannot be made to happen from outside; it is not tested here.)
def test_a_model_that_hangs_ends_by_the_turn_timeout_with_exit_1(env: dict[str, str], llm: FakeOpenAI) -> None:
    llm.worker(Reply.hang())
    done = run_module("sidekick", "ask", "Hello?", timeout=60, env={**env, "SIDEKICK_TURN_TIMEOUT": "1"})
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert line.startswith("error: The task took longer than 1 s and was stopped.") and "SIDEKICK_TURN_TIMEOUT" in line


# Regression (bug 4, approval answer): only KeyboardInterrupt was caught around the event loop, so
# a failure while answering an approval escaped as a traceback. The real failure reproduced here is
# the terminal closing at the approval prompt (Ctrl-D: input() raises EOFError): nobody said yes, so
# it is a deny, the run goes on and answers. A SidekickError from Sidekick.answer_approval itself
# cannot be provoked from outside the process (it needs the session to be closed between the pause
# and the answer), so it is not tested.
def test_end_of_input_at_the_approval_prompt_denies_without_a_traceback(
    env: dict[str, str], llm: FakeOpenAI, tmp_path: Path
) -> None:
    llm.worker(Reply.tool_call("write_file", {"path": "a.txt", "content": "A"}), Reply.text("Written."))
    llm.evaluator(verdict(True))
    controller, terminal = pty.openpty()
    try:
        with start(env, "ask", "Write a", stdin=terminal) as proc:
            os.close(terminal)
            terminal = -1
            os.write(controller, b"\x04")  # Ctrl-D, read by the prompt as end of input
            try:
                out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert "Allow write_file(" in out, out
    assert "Traceback" not in err and err.strip() == "Denied.", err
    assert proc.returncode == 0 and "Written." in out  # the run went on with the denial
    assert not list((tmp_path / "data").rglob("a.txt")), "nothing was approved, so nothing was written"


# Regression (bug 7): SIDEKICK_RECURSION_LIMIT=0 and SIDEKICK_MAX_EVALUATIONS=0 were accepted, and
# every turn then failed (no step could run, or no answer could be reviewed). Now settings refuse
# them and the CLI exits 2 with one line naming the variable.
@pytest.mark.parametrize(
    ("name", "minimum"), [("SIDEKICK_RECURSION_LIMIT", 2), ("SIDEKICK_MAX_EVALUATIONS", 1)]
)
def test_an_integer_setting_that_fails_every_turn_exits_2_naming_it(
    env: dict[str, str], name: str, minimum: int
) -> None:
    done = run_module("sidekick", "ask", "Hi", timeout=60, env={**env, name: "0"})
    assert done.returncode == 2
    assert one_error_line(done.stderr) == (
        f"error: {name} must be at least {minimum} (got 0); a smaller value fails every turn."
    )
