"""The run record: every event of a run kept in the store as it happens, read back exactly, exported
as one self-contained file, and a server killed mid-run loses only the step in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from sidekick.browser.chromium import find_browser, launch_args
from sidekick.config import Settings
from sidekick.events import (
    AnswerDelta,
    ApprovalAnswered,
    ApprovalNeeded,
    ErrorEvent,
    Finished,
    RunStarted,
    Screenshot,
    Verdict,
)
from sidekick.export import to_html
from sidekick.store import INTERRUPTED, Store, turn_of
from tests.support.commands import REPO_ROOT
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import Rig, collect, verdict
from tests.support.waiting import poll

PRIVATE = [{"allow_private_network": True}]


@pytest.mark.parametrize("rig", PRIVATE, indirect=True)
async def test_a_run_is_recorded_as_it_looked_live(rig: Rig, llm: FakeOpenAI, site: LocalSite) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("It is 4217."))
    llm.evaluator(verdict(True))
    live = [e for e in await rig.run("Secret number?", "Quotes the number") if not isinstance(e, AnswerDelta)]
    [run] = await rig.store.record("t1")  # all of it but the streamed pieces of the answer
    assert [type(e) for e in run.events] == [type(e) for e in live]
    assert run.events[:2] == live[:2] and run.events[-1].kind == "finished"
    [shot] = [e for e in run.events if isinstance(e, Screenshot)]
    [live_shot] = [e for e in live if isinstance(e, Screenshot)]
    assert shot.png == live_shot.png and shot.png.startswith(b"\x89PNG")  # the file, byte for byte
    assert list((rig.settings.data_dir / "records" / "t1").glob("*.png"))
    verdict_event = next(e for e in run.events if isinstance(e, Verdict))
    assert verdict_event.checks and verdict_event.checks[0].met
    assert all(b >= a for a, b in zip(run.times, run.times[1:], strict=False))  # timings kept, in order


async def test_approvals_and_their_answers_are_kept_in_the_turn(rig: Rig, llm: FakeOpenAI) -> None:
    llm.worker(Reply.tool_call("write_file", {"path": "a.txt", "content": "x"}), Reply.text("Written."))
    llm.evaluator(verdict(True))
    await rig.run("Write a file", "A file is written")
    await collect(await rig.runner.resume("t1", True))
    first, second = await rig.store.record("t1")
    assert any(isinstance(e, ApprovalNeeded) for e in first.events)
    assert first.opens_turn and not second.opens_turn
    assert ApprovalAnswered(approved=True) in second.events
    assert [r.run_id for r in turn_of([first, second], first.run_id)] == [first.run_id, second.run_id]


async def test_interrupted_runs_and_the_screenshot_budget(tmp_path: Path) -> None:
    store = await Store(tmp_path / "sidekick.sqlite", screenshot_budget=2).open()
    try:
        started = RunStarted(run_id="r1", thread_id="t", message="go", criteria="ok")
        shots = [Screenshot(png=b"\x89PNG%d" % i, url=f"https://e.test/{i}", title="", taken_at=0.0) for i in range(3)]
        await store.append("t", "r1", [(1, 1.0, started), *((i + 2, 2.0 + i, s) for i, s in enumerate(shots))])
        [run] = await store.record("t")
        # No Finished: the server stopped mid-run. The finished steps are there, then the note.
        assert isinstance(run.events[-2], ErrorEvent) and run.events[-2].message == INTERRUPTED
        assert isinstance(run.events[-1], Finished) and run.events[-1].outcome == "error"
        kept = [e.png for e in run.events if isinstance(e, Screenshot)]
        assert kept == [b"", shots[1].png, shots[2].png]  # the oldest file went; its step stays
        assert len(list((tmp_path / "records" / "t").glob("*.png"))) == 2
        await store.delete("t")
        assert await store.record("t") == [] and not (tmp_path / "records" / "t").exists()
    finally:
        await store.aclose()


async def test_old_conversations_are_pruned(tmp_path: Path) -> None:
    store = await Store(tmp_path / "sidekick.sqlite").open()
    try:
        await store.touch("old", "hello")
        await store.touch("new", "hi")
        assert await store.prune(keep_days=1, now=time.time() + 2 * 86_400) == ["old", "new"]
        assert await store.list() == []
    finally:
        await store.aclose()


@pytest.mark.parametrize("rig", PRIVATE, indirect=True)
async def test_the_html_export_opens_without_a_network(
    rig: Rig, llm: FakeOpenAI, site: LocalSite, tmp_path: Path
) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("It is <b>4217</b>."))
    llm.evaluator(verdict(True))
    await rig.run("Secret number?", "Quotes the number")
    page_file = tmp_path / "run.html"
    page_file.write_text(to_html("t1", "Secret number?", await rig.store.record("t1")))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=find_browser(Settings()), args=launch_args())
        try:
            context = await browser.new_context(offline=True)
            requests: list[str] = []
            context.on("request", lambda r: requests.append(r.url))
            page = await context.new_page()
            await page.goto(page_file.as_uri())
            assert await page.locator("h2").first.inner_text() == "Secret number?"
            assert "It is <b>4217</b>." in await page.locator(".answer").inner_text()  # escaped, not markup
            assert await page.locator("b", has_text="4217").count() == 0
            loaded = await page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            assert loaded and all(width > 0 for width in loaded)  # inlined screenshots render
            assert "passed" in await page.content()
            assert requests == [page_file.as_uri()]  # nothing but the file itself
        finally:
            await browser.close()


def test_a_server_killed_mid_run_keeps_every_finished_step(tmp_path: Path, llm: FakeOpenAI, site: LocalSite) -> None:
    """kill -9 of a real Sidekick process in the middle of a run, then the record from a new one."""
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.hang())
    data = tmp_path / "data"
    env = {
        **os.environ,
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "test",
        "SIDEKICK_DATA_DIR": str(data),
        "SIDEKICK_MODEL_RETRIES": "0",
        "SIDEKICK_ALLOW_PRIVATE_NETWORK": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidekick", "ask", "Secret number?", "--thread", "k9", "--json"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # the navigate step finished once its result is out
            seen.append(json.loads(line)["type"])
            if "screenshot" in seen:
                break
        assert poll(lambda: len(llm.requests) >= 2, timeout=20), "the second model call never came"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        llm.reset()  # releases the hanging reply

    done = subprocess.run(
        [sys.executable, "-m", "sidekick", "export", "k9", "--json", str(tmp_path / "k9.json")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    [run] = json.loads((tmp_path / "k9.json").read_text())["runs"]
    kinds = [e["type"] for e in run["events"]]
    assert kinds[:2] == ["run_started", "tool_call"] and {"tool_result", "screenshot"} <= set(kinds[2:4])
    assert kinds[-2:] == ["error", "finished"] and run["events"][-2]["message"] == INTERRUPTED
    assert next(e for e in run["events"] if e["type"] == "screenshot")["png_base64"]


def test_export_refuses_an_unknown_conversation(tmp_path: Path) -> None:
    env = {**os.environ, "SIDEKICK_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "sidekick", "export", "nope", "--html", str(tmp_path / "x.html")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1 and "no conversation 'nope'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.html").exists()
