"""The dashboard under AppTest with a setting that would fail every turn (regression)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import sidekick.facade
from sidekick.config import Settings

pytestmark = pytest.mark.timeout(120)

APP = Path(__file__).resolve().parents[2] / "sidekick" / "ui" / "page.py"


@pytest.fixture(autouse=True)
def _no_core() -> Iterator[None]:
    """The core is a process singleton: close any left by an earlier module, and any made here."""
    sidekick.facade.close_sidekick()
    yield
    sidekick.facade.close_sidekick()


# Regression (bug 7): SIDEKICK_RECURSION_LIMIT=0 (or SIDEKICK_MAX_EVALUATIONS=0) was accepted, the
# dashboard started, and every message then failed. Now the page shows one configuration error
# naming the variable, renders nothing else, and starts no core.
@pytest.mark.parametrize(("name", "minimum"), [("SIDEKICK_RECURSION_LIMIT", 2), ("SIDEKICK_MAX_EVALUATIONS", 1)])
def test_an_integer_setting_that_fails_every_turn_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, minimum: int
) -> None:
    for env, _, _ in Settings.documented():
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("SIDEKICK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv(name, "0")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets = {"SIDEKICK_TESTS": "isolated"}  # a developer's secrets.toml must not leak in
    at.run()

    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == [
        f"Sidekick's configuration has a problem: {name} must be at least {minimum} (got 0); "
        "a smaller value fails every turn."
    ]
    assert not at.chat_input, "nothing else renders"
    assert sidekick.facade.current_sidekick() is None, "no core was started"
