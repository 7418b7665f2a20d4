"""The runner across turns (regressions): what a run carries over from the thread's last run, and
which screenshots a vision run shows the model."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from sidekick.events import FinalAnswer, Screenshot, ToolResult
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import Rig, of, verdict


def images(request: dict[str, Any]) -> list[str]:
    return [
        part["image_url"]["url"]
        for m in request["messages"]
        if isinstance(m.get("content"), list)
        for part in m["content"]
        if part.get("type") == "image_url"
    ]


async def first_worker_request(rig: Rig, llm: FakeOpenAI, message: str, thread: str) -> dict[str, Any]:
    """Run one plain turn on ``thread`` and return the worker's first request of that turn."""
    seen = len(llm.requests)
    llm.worker(Reply.text("Done."))
    llm.evaluator(verdict(True))
    events = await rig.run(message, thread=thread)
    assert of(events, FinalAnswer), events
    return next(r for r in llm.requests[seen:] if "response_format" not in r)


# Regression (bug 1): with SIDEKICK_VISION=1 the runner kept one "last screenshot" per session and
# put it into the next run's context whatever the thread, and Reset or an idle close left it there:
# the first model call after New chat or Reset showed the model a page that was no longer open (or a
# page from another conversation). Now the screen is kept with its thread id and forgotten by
# Session.release() (Reset and idle), so (a) and (b) below sent an image before the fix.
@pytest.mark.parametrize("rig", [{"vision": True}], indirect=True)
async def test_vision_carries_the_screen_only_within_its_thread_and_never_past_a_reset(
    rig: Rig, llm: FakeOpenAI, site: LocalSite
) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("The number is 4217."))
    llm.evaluator(verdict(True))
    events = await rig.run("Open the about page", thread="t1")
    assert of(events, Screenshot) and of(events, FinalAnswer)

    # (a) New chat: a new thread id on the same session starts without the old page.
    assert images(await first_worker_request(rig, llm, "Something else", thread="t2")) == []

    # (c) The same thread without a reset still sees where it left off (behaviour kept).
    carried = images(await first_worker_request(rig, llm, "And now?", thread="t1"))
    assert len(carried) == 1 and carried[0].startswith("data:image/png;base64,")

    # (b) Reset closes the browser: the thread's next turn must not be shown the page it closed.
    await rig.session.release()
    assert images(await first_worker_request(rig, llm, "After the reset", thread="t1")) == []


@pytest.mark.parametrize("rig", [{"vision": True}], indirect=True)
async def test_vision_sends_only_the_latest_screenshot(rig: Rig, llm: FakeOpenAI, site: LocalSite) -> None:
    llm.worker(
        Reply.tool_call("navigate", {"url": site.url("/")}),
        Reply.tool_call("navigate", {"url": site.url("/about")}),
        Reply.text("Done."),
    )
    llm.evaluator(verdict(True))
    await rig.run("Look at two pages")

    worker_requests = [r for r in llm.requests if "response_format" not in r]
    assert images(worker_requests[0]) == []  # nothing seen yet
    assert [len(images(r)) for r in worker_requests[1:]] == [1, 1]  # one image, never an accumulation
    assert images(worker_requests[1]) != images(worker_requests[2])
    assert images(worker_requests[2])[0].startswith("data:image/png;base64,")


def recorder_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("sidekick-record-") and not t.done()]


def drain_fifo(path: Path) -> None:
    """Be the reader the blocked writer waits for, until it has written everything."""
    with open(path, "rb") as fifo:
        while fifo.read(65536):
            pass


# A bug this file found (not fixed here): Runner.aclose() returns while the run's record writer is
# still writing. A finished run waits for its writer in Recorder.__aexit__ behind asyncio.shield;
# Runner.cancel() (called by aclose: Reset, tab end, exit) cancels the run task, the cancellation
# lands on the shield and ends the task at once, and the writer is left running with nobody waiting.
# The caller then closes the store (Sidekick.close, the CLI's exit right after an approval prompt),
# the writer's next write fails with "Cannot operate on a closed database" and is logged with a
# traceback: the CLI prints it on stderr (seen at random in tests/test_cli_exits.py), and the run's
# last events are lost. Deterministic here: the screenshot file the writer must write is a FIFO
# nobody reads yet, so the writer is really blocked on I/O while the run finishes.
async def test_closing_the_runner_waits_for_the_record_writer(rig: Rig, llm: FakeOpenAI, site: LocalSite) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/about")}), Reply.text("Done."))
    llm.evaluator(verdict(True))
    handle = await rig.runner.start("Open the about page", "ok", "t1")
    # Made before the run's task first runs: every file name its screenshots could take.
    folder = rig.store.records / "t1"
    folder.mkdir(parents=True, exist_ok=True)
    fifos = [folder / f"{handle.run_id}-{seq:05d}.png" for seq in range(1, 40)]
    for fifo in fifos:
        os.mkfifo(fifo)
    events: list[Any] = []
    closing: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):
            while not of(events, FinalAnswer):
                events.extend(handle.drain())
                await asyncio.sleep(0.01)
        assert of(events, Screenshot) and recorder_tasks(), "the writer is blocked, as this test needs"
        closing = asyncio.create_task(rig.runner.aclose())
        await asyncio.sleep(0.5)
        assert not (closing.done() and recorder_tasks()), "aclose() returned with the record writer still running"
    finally:
        shot_seq = next((i for i, e in enumerate(events, 1) if isinstance(e, Screenshot)), 0)
        for seq, fifo in enumerate(fifos, 1):
            if seq != shot_seq:
                fifo.unlink()
        if shot_seq:
            await asyncio.to_thread(drain_fifo, fifos[shot_seq - 1])
        for task in recorder_tasks():
            await asyncio.wait([task], timeout=10)
        if closing is not None:
            await asyncio.wait([closing], timeout=10)


async def test_each_step_that_used_the_browser_ends_with_one_screenshot(
    rig: Rig, llm: FakeOpenAI, site: LocalSite, tmp_path: Path
) -> None:
    """No screenshot after every action (the live view shows those): one per step, for the record,
    after the step's results; navigate's own counts as it, and a step without the browser has none."""
    (tmp_path / "notes.txt").write_text("hello")
    llm.worker(
        Reply.tool_call("navigate", {"url": site.url("/about")}),
        Reply.tool_call("read_page", {}),
        Reply.tool_call("list_files", {}),
        Reply.text("The number is 4217."),
    )
    llm.evaluator(verdict(True))
    events = await rig.run("Read the about page")
    shots = of(events, Screenshot)
    assert [s.url for s in shots] == [site.url("/about")] * 2, events
    results = [i for i, e in enumerate(events) if isinstance(e, ToolResult)]
    taken = [i for i, e in enumerate(events) if isinstance(e, Screenshot)]
    # navigate's comes with its call; read_page's step ends with one (taken while the next step
    # goes on, so it may come after that step's result); list_files' step has none.
    assert taken[0] < results[0] < results[1] < taken[1], events
    recorded = [e for run in await rig.store.record("t1") for e in run.events if isinstance(e, Screenshot)]
    assert len(recorded) == 2
