"""`python -m sidekick` end to end: real fake-model HTTP, real Chromium, a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidekick.cli import main
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import verdict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, llm: FakeOpenAI) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith(("SIDEKICK_", "OPENAI_", "SERPER_", "PUSHOVER_")):
            monkeypatch.delenv(key)
    values = {
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-test-secret",
        "SIDEKICK_DATA_DIR": str(tmp_path / "data"),
        "SIDEKICK_MODEL_RETRIES": "0",
        "SIDEKICK_MODEL_TIMEOUT": "5",
        "SIDEKICK_ALLOW_PRIVATE_NETWORK": "1",  # the test site is on 127.0.0.1
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_ask_prints_json_events_and_saves_screenshots(
    env: dict[str, str], llm: FakeOpenAI, site: LocalSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("It is 4217."))
    llm.evaluator(verdict(True))
    shots = tmp_path / "shots"
    code = main(["ask", "Secret number?", "--json", "--screenshots", str(shots), "--thread", "cli-1"])
    out = capsys.readouterr().out
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["type"] for e in events]
    assert code == 0
    assert kinds[0] == "run_started" and kinds[-1] == "finished"
    assert {"tool_call", "tool_result", "screenshot", "verdict", "final_answer"} <= set(kinds)
    assert next(e for e in events if e["type"] == "final_answer")["text"] == "It is 4217."
    saved = sorted(shots.glob("*.png"))
    assert saved and saved[0].read_bytes().startswith(b"\x89PNG")

    # The same thread continues, and the conversation is listed.
    llm.worker(Reply.text("Still 4217."))
    llm.evaluator(verdict(True))
    assert main(["ask", "And again?", "--thread", "cli-1"]) == 0
    text = capsys.readouterr().out
    assert "Still 4217." in text and "continue with --thread cli-1" in text
    assert main(["conversations"]) == 0
    assert "cli-1  Secret number?" in capsys.readouterr().out


def test_approval_is_denied_without_a_terminal_and_granted_with_yes(
    env: dict[str, str], llm: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm.worker(Reply.tool_call("write_file", {"path": "a.txt", "content": "A"}), Reply.text("Not written."))
    llm.evaluator(verdict(True))
    assert main(["ask", "Write a", "--thread", "deny"]) == 0
    captured = capsys.readouterr()
    assert "Denied (no terminal" in captured.err
    assert not list((tmp_path / "data").rglob("a.txt"))

    llm.worker(Reply.tool_call("write_file", {"path": "b.txt", "content": "B"}), Reply.text("Written."))
    llm.evaluator(verdict(True))
    assert main(["ask", "Write b", "--yes", "--thread", "allow"]) == 0
    assert [p.read_text() for p in (tmp_path / "data").rglob("b.txt")] == ["B"]


def test_a_model_error_is_one_clear_line_and_exit_1(
    env: dict[str, str], llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    llm.worker(Reply.error(500))
    assert main(["ask", "Hi"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: The model server failed (500). Try again in a moment."]


def test_an_unreachable_model_server_is_a_clear_error(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert main(["ask", "Hi"]) == 1
    err = capsys.readouterr().err
    assert "Could not reach the model server at http://127.0.0.1:9/v1" in err
    assert "sk-test-secret" not in err


@pytest.mark.parametrize(
    ("unset", "setting", "message"),
    [
        (("OPENAI_API_KEY", "OPENAI_BASE_URL"), {}, "No model is configured"),
        ((), {"SIDEKICK_MAX_EVALUATIONS": "lots"}, "SIDEKICK_MAX_EVALUATIONS must be a whole number"),
        ((), {"SIDEKICK_TURN_TIMEOUT": "-3"}, "SIDEKICK_TURN_TIMEOUT must be a positive number"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    unset: tuple[str, ...],
    setting: dict[str, str],
    message: str,
) -> None:
    for key in unset:
        monkeypatch.delenv(key)
    for key, value in setting.items():
        monkeypatch.setenv(key, value)
    assert main(["ask", "Hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_bad_thread_id_is_refused(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "Hi", "--thread", "../../etc"]) == 2
    assert "--thread takes the id" in capsys.readouterr().err


def test_the_module_entry_point_runs_for_real(env: dict[str, str], llm: FakeOpenAI) -> None:
    llm.worker(Reply.text("Hello from the CLI."))
    llm.evaluator(verdict(True))
    proc = subprocess.run(
        [sys.executable, "-m", "sidekick", "ask", "Say hello", "--json"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["type"] == "finished" and events[-1]["outcome"] == "answer"
    assert any(e.get("text") == "Hello from the CLI." for e in events)
