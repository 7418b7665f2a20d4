"""The dashboard as a person uses it: a real `streamlit run`, a real browser, the fake model over HTTP.

One dashboard serves the module, its model being a :class:`FakeOpenAI` in this test process that
each test scripts. While a run is active the script stays "running" (it drains the run's events in a
loop), so these tests wait on what the page shows, never on the script being idle.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.support.child import is_alive
from tests.support.dashboard import (
    CHAT_INPUT,
    EXCEPTION,
    IMAGE,
    LIVE_VIEW,
    RUN_TIMEOUT_MS,
    TOAST,
    DashboardServer,
    Tabs,
    first_run,
    open_address,
    open_app,
    rerun,
    save_artifact,
    send,
    sidekick_server,
    wait_idle,
)
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.fakes.site import LocalSite
from tests.support.runs import verdict
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RELEASE_TIMEOUT = 15.0  # s: on_release about 1 s after the tab goes, then Chromium lets go
# A page whose title shows the cookies it can see; the dashboard shows a page only as a screenshot
# and a caption with its title.
WHOAMI = (
    "<html><head><title>?</title></head><body><p id='c'></p><script>"
    "document.title = 'cookies: ' + (document.cookie || '(none)');"
    "document.getElementById('c').textContent = document.title;"
    "</script></body></html>"
)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeOpenAI) -> Iterator[DashboardServer]:
    """Overrides conftest's: this dashboard has a model (the fake) and may browse 127.0.0.1."""
    server = sidekick_server(
        tmp_path_factory.mktemp("dashboard"),
        OPENAI_BASE_URL=llm_server.base_url,
        OPENAI_API_KEY="test",
        SIDEKICK_ALLOW_PRIVATE_NETWORK="1",
        SIDEKICK_MODEL_RETRIES="0",
    )
    with server:
        yield server


@pytest.fixture
async def page(tabs: Tabs) -> AsyncIterator[Page]:
    yield await tabs.open()


# -- helpers ---------------------------------------------------------------------------------------
def browser_column(page: Page) -> Locator:
    """The right-hand column of the main area (the "Web address" box and the screenshots)."""
    # The first match: the address box's own columns are nested inside it.
    columns = page.locator("[data-testid='stMain'] [data-testid='stColumn']")
    return columns.filter(has=page.get_by_label("Web address")).first


def stop_button(page: Page) -> Locator:
    """The app's Stop (not Streamlit's own "Stop" in the header, which stops only the script)."""
    return page.get_by_test_id("stMain").get_by_role("button", name="Stop")


def caption(page: Page, url: str) -> Locator:
    """The caption over the large screenshot: ``**<title>** — <url>``."""
    return browser_column(page).locator("[data-testid='stCaptionContainer']", has_text=url)


async def ask(page: Page, text: str, answer: str) -> None:
    """Send a message and wait for its answer, and for the script to settle after the run."""
    await send(page, text)
    await expect(page.get_by_text(answer, exact=True)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    # The script reruns once the run is over (without the Stop button): wait for that rerun to finish,
    # not for the idle moment between the two.
    await expect(stop_button(page)).to_have_count(0)
    await wait_idle(page)
    await expect(page.locator(CHAT_INPUT)).to_be_enabled()


def script_navigate(llm: FakeOpenAI, url: str, answer: str) -> None:
    llm.worker(Reply.tool_call("navigate", {"url": url}), Reply.text(answer))
    llm.evaluator(verdict(True))


async def no_traceback(page: Page) -> None:
    await expect(page.locator(EXCEPTION)).to_have_count(0)
    assert "Traceback" not in await page.locator("body").inner_text()


async def back_to(server: DashboardServer, baseline: int, what: str) -> None:
    await wait_until(lambda: server.process_count() <= baseline, timeout=RELEASE_TIMEOUT, what=what)


# -- scenarios -------------------------------------------------------------------------------------
async def test_a_task_shows_its_steps_screenshot_checklist_and_answer(
    page: Page, llm: FakeOpenAI, site: LocalSite
) -> None:
    url = site.url("/about")
    script_navigate(llm, url, "The secret number is 4217.")

    await ask(page, "What is the secret number on the about page?", "The secret number is 4217.")

    chat = page.locator("[data-testid='stChatMessage']")
    await expect(chat.first).to_contain_text("What is the secret number on the about page?")
    steps = page.locator("[data-testid='stExpander']", has_text="1 step")
    await expect(steps).to_be_visible()
    await steps.locator("summary").click()  # collapsed once the run is over
    await expect(steps.get_by_text("navigate", exact=True)).to_be_visible()
    await expect(page.get_by_text("Review 1: passed")).to_be_visible()
    await expect(caption(page, url)).to_contain_text("About")
    await expect(browser_column(page).locator(IMAGE).first).to_be_visible()
    await no_traceback(page)
    assert "/about" in site.hits
    await save_artifact(page, "dashboard-task")


async def test_stop_ends_a_slow_run(page: Page, llm: FakeOpenAI) -> None:
    llm.worker(Reply.slow(30, Reply.text("Too late.")))
    box = page.locator(CHAT_INPUT)
    await send(page, "Take your time.")
    await expect(stop_button(page)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    await wait_until(lambda: llm.requests, timeout=30, what="the model asked")
    await expect(box).to_be_disabled(timeout=10_000)

    clicked = time.monotonic()
    await stop_button(page).click()
    await expect(page.get_by_text("Stopped.", exact=False)).to_be_visible(timeout=10_000)
    assert time.monotonic() - clicked < 10
    await no_traceback(page)
    await expect(box).to_be_enabled(timeout=10_000)
    await expect(stop_button(page)).to_have_count(0)
    await save_artifact(page, "dashboard-stop")
    assert "Too late." not in await page.locator("body").inner_text()


async def test_reset_after_a_run_frees_its_browser_and_clears_the_chat(
    page: Page, llm: FakeOpenAI, site: LocalSite, dashboard: DashboardServer, baseline: int
) -> None:
    url = site.url("/")
    script_navigate(llm, url, "It welcomes you.")
    await ask(page, "What does the front page say?", "It welcomes you.")
    await expect(caption(page, url)).to_contain_text("Sidekick test site")
    assert dashboard.process_count() > baseline, "the run's browser context (and its renderer) is open"
    thread = page.url

    await rerun(page, page.get_by_role("button", name="Reset", exact=True).click)

    await expect(page.locator(TOAST)).to_contain_text("Freed 1 browser context")
    await back_to(dashboard, baseline, f"server back to {baseline} browser processes after Reset")
    await expect(page.locator("[data-testid='stChatMessage']")).to_have_count(0)
    await expect(page.locator(IMAGE)).to_have_count(0)
    assert page.url != thread, "Reset starts a new conversation"
    await no_traceback(page)
    await save_artifact(page, "dashboard-reset")


async def test_two_tabs_have_separate_cookies(tabs: Tabs, site: LocalSite) -> None:
    site.route("/whoami", WHOAMI)
    first, second = await tabs.open(), await tabs.open()
    await open_address(first, site.url("/set-cookie?value=first"))
    await open_address(second, site.url("/set-cookie?value=second"))

    for tab, mine, theirs in [(first, "sk=first", "sk=second"), (second, "sk=second", "sk=first")]:
        await open_address(tab, site.url("/whoami"))
        shown = caption(tab, site.url("/whoami"))
        await expect(shown).to_contain_text(f"cookies: {mine}")
        assert theirs not in await shown.inner_text()
        await no_traceback(tab)
    await save_artifact(first, "dashboard-cookies-first")
    await save_artifact(second, "dashboard-cookies-second")


async def test_a_reload_brings_the_conversation_back(page: Page, llm: FakeOpenAI, site: LocalSite) -> None:
    script_navigate(llm, site.url("/about"), "It is 4217.")
    await ask(page, "Find the secret number.", "It is 4217.")
    url = page.url
    assert "thread=" in url

    await page.reload(wait_until="domcontentloaded")
    await first_run(page, RUN_TIMEOUT_MS / 1000)

    assert page.url == url
    chat = page.locator("[data-testid='stChatMessage']")
    await expect(chat).to_have_count(2)
    await expect(chat.nth(0)).to_contain_text("Find the secret number.")
    await expect(chat.nth(1)).to_contain_text("It is 4217.")
    # The turn as it looked live, from the run record: its steps, checklist and screenshot.
    steps = page.locator("[data-testid='stExpander']", has_text="1 step")
    await expect(steps).to_be_visible()
    await steps.locator("summary").click()
    await expect(steps.get_by_text("navigate", exact=True)).to_be_visible()
    await expect(page.get_by_text("Review 1: passed")).to_be_visible()
    await expect(browser_column(page).locator(IMAGE).first).to_be_visible()
    sidebar = page.locator("[data-testid='stSidebar']")
    await expect(sidebar.get_by_text("Conversations")).to_be_visible()
    await expect(sidebar.get_by_role("button", name="Find the secret number.")).to_be_visible()
    # One self-contained file of the whole conversation.
    async with page.expect_download() as waiting:
        await sidebar.get_by_role("button", name="Download conversation").click()
    download = await waiting.value
    saved = await download.path()
    text = saved.read_text() if saved is not None else ""
    assert "Find the secret number." in text and "It is 4217." in text and "data:image/png;base64," in text
    await no_traceback(page)
    await save_artifact(page, "dashboard-reload")


async def test_a_restarted_server_shows_the_recorded_turn(
    user_browser: Browser, llm: FakeOpenAI, site: LocalSite, tmp_path: Path
) -> None:
    """The run record outlives the process: a new server on the same data folder shows the turn's
    steps, checklist and screenshot as they looked live."""

    def serve() -> DashboardServer:  # on the same data folder each time
        return sidekick_server(
            tmp_path / "server", OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="test", SIDEKICK_MODEL_RETRIES="0"
        )

    first = serve()
    await asyncio.to_thread(first.start)
    try:
        page = await open_app(user_browser, first.url)
        try:
            script_navigate(llm, site.url("/about"), "It is 4217.")
            await ask(page, "Find the secret number.", "It is 4217.")
            thread = parse_qs(urlsplit(page.url).query)["thread"][0]
        finally:
            await page.close()
    finally:
        await asyncio.to_thread(first.close)

    second = serve()
    await asyncio.to_thread(second.start)
    try:
        page = await open_app(user_browser, f"{second.url}?thread={thread}")
        try:
            await wait_idle(page)
            await expect(page.get_by_text("It is 4217.", exact=True)).to_be_visible()
            steps = page.locator("[data-testid='stExpander']", has_text="1 step")
            await steps.locator("summary").click()
            await expect(steps.get_by_text("navigate", exact=True)).to_be_visible()
            await expect(page.get_by_text("Review 1: passed")).to_be_visible()
            await expect(browser_column(page).locator(IMAGE).first).to_be_visible()
            await no_traceback(page)
        finally:
            await page.close()
    finally:
        await asyncio.to_thread(second.close)


async def test_the_answer_streams_in_before_the_run_ends(page: Page, llm: FakeOpenAI) -> None:
    """The worker's reply shows as the model streams it; the evaluator (slow here) judges it after."""
    llm.worker(Reply.text("Streaming words arrive one by one."))
    llm.evaluator(Reply.slow(5, verdict(True)))
    await send(page, "Say something.")
    draft = page.get_by_text("Streaming words arrive one by one. ▌")
    await expect(draft).to_be_visible(timeout=RUN_TIMEOUT_MS)
    await expect(stop_button(page)).to_be_visible()  # still running: the review is under way
    assert llm.requests[-1].get("stream") is True or any(r.get("stream") for r in llm.requests)
    await expect(page.get_by_text("Streaming words arrive one by one.", exact=True)).to_be_visible(
        timeout=RUN_TIMEOUT_MS
    )
    await expect(draft).to_have_count(0)
    await expect(page.get_by_text("Review 1: passed")).to_be_visible()
    await no_traceback(page)


# -- the live view ---------------------------------------------------------------------------------
# A page that repaints three times a second, so each frame of it differs from the last.
TICKER = (
    "<html><head><title>Ticker</title></head><body><h1 id='n'>0</h1><script>"
    "let n = 0; setInterval(() => { document.getElementById('n').textContent = ++n; }, 300);"
    "</script></body></html>"
)


VISIBILITY_JS = """(state) => {
  Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def live_image(page: Page) -> Locator:
    return page.locator(f"{LIVE_VIEW} img")


async def live_views(page: Page, count: int) -> None:
    """The resources panel says ``count`` pages are being cast (reloading until it does)."""
    caption = page.locator("[data-testid='stSidebar'] [data-testid='stCaptionContainer']", has_text="live views")

    async def says() -> bool:
        if f"live views {count}" in await caption.inner_text():
            return True
        await page.reload(wait_until="domcontentloaded")
        await first_run(page, RUN_TIMEOUT_MS / 1000)
        return False

    await wait_until(says, timeout=30, interval=0.5, what=f"live views {count}")


SHOWN_JS = "(sel) => document.querySelector(sel)?.naturalWidth > 0"  # the image shows a frame
# The live image's pixels, as the tab shows them now (a data: URL of a canvas copy).
PIXELS_JS = """(img) => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  canvas.getContext("2d").drawImage(img, 0, 0);
  return canvas.toDataURL();
}"""


async def test_the_live_view_shows_the_sessions_page_as_it_changes(
    page: Page, llm: FakeOpenAI, site: LocalSite
) -> None:
    site.route("/ticker", TICKER)
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/ticker")}), Reply.slow(8, Reply.text("It ticked.")))
    llm.evaluator(verdict(True))
    await send(page, "Watch the ticker.")

    await expect(page.locator(LIVE_VIEW)).to_contain_text(site.url("/ticker"), timeout=RUN_TIMEOUT_MS)
    image = live_image(page)
    await expect(image).to_be_visible()
    src = await image.get_attribute("src")
    assert src is not None and src.startswith("/sidekick/live/")
    await page.wait_for_function(SHOWN_JS, arg=f"{LIVE_VIEW} img")
    first = await image.evaluate(PIXELS_JS)

    async def moved() -> bool:  # the same <img>, streaming: its pixels change, its address does not
        return await image.get_attribute("src") == src and await image.evaluate(PIXELS_JS) != first

    await wait_until(moved, timeout=15, what="a newer frame of the ticking page in the same image")
    await no_traceback(page)
    await save_artifact(page, "dashboard-live-view")
    await expect(page.get_by_text("It ticked.", exact=True)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    # Once the run is over the tab shows the step's screenshot, and the screencast ends unwatched.
    await expect(page.locator(LIVE_VIEW)).to_have_count(0)
    await expect(browser_column(page).locator(IMAGE).first).to_be_visible()
    await live_views(page, 0)
    await no_traceback(page)


async def test_the_live_stream_is_refused_without_a_current_ticket(
    tabs: Tabs, llm: FakeOpenAI, site: LocalSite, dashboard: DashboardServer
) -> None:
    """A made-up ticket, and a tab's ticket after Reset, get 404; a current one streams MJPEG."""
    watcher, other = await watching_a_ticker(tabs, llm, site)
    src = await live_image(watcher).get_attribute("src")
    assert src is not None
    made_up = await watcher.request.get(dashboard.url.rstrip("/") + "/sidekick/live/not-a-ticket")
    assert made_up.status == 404 and "no-store" in made_up.headers.get("cache-control", "")
    head = await watcher.evaluate(STREAM_HEAD_JS, src)
    assert head["status"] == 200 and head["type"].startswith("multipart/x-mixed-replace")
    assert head["encoding"] is None, "the stream must not be compressed (it would be held back)"
    assert b"\xff\xd8" in bytes(head["first"]), "no JPEG in the stream's first bytes"
    await rerun(watcher, watcher.get_by_role("button", name="Reset", exact=True).click)
    revoked = await watcher.request.get(dashboard.url.rstrip("/") + src)
    assert revoked.status == 404
    await live_views(other, 0)
    await no_traceback(watcher)


# The first bytes of a stream (fetched by the tab itself, with its cookies), without waiting for its end.
STREAM_HEAD_JS = """async (src) => {
  const response = await fetch(src);
  const reader = response.body.getReader();
  let first = [];
  while (first.length < 4000) {
    const {value, done} = await reader.read();
    if (done) break;
    first = first.concat(Array.from(value));
  }
  reader.cancel();
  return {status: response.status, type: response.headers.get("content-type"),
          encoding: response.headers.get("content-encoding"), first};
}"""


async def watching_a_ticker(tabs: Tabs, llm: FakeOpenAI, site: LocalSite) -> tuple[Page, Page]:
    """A tab whose long run shows the ticking page in its live view, and another tab that counts it."""
    site.route("/ticker", TICKER)
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/ticker")}), Reply.slow(30, Reply.text("Too late.")))
    watcher = await tabs.open()
    await send(watcher, "Watch the ticker for a long time.")
    await expect(live_image(watcher)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    other = await tabs.open()
    await live_views(other, 1)
    return watcher, other


async def test_closing_the_watching_tab_stops_the_screencast(tabs: Tabs, llm: FakeOpenAI, site: LocalSite) -> None:
    watcher, other = await watching_a_ticker(tabs, llm, site)
    await watcher.close()
    await live_views(other, 0)
    await no_traceback(other)


async def test_after_streamlits_own_stop_the_run_goes_on_and_its_answer_appears(page: Page, llm: FakeOpenAI) -> None:
    """The toolbar's Stop ends the script run, not our run: the live area follows it again by itself."""
    llm.worker(Reply.slow(5, Reply.text("Finished all the same.")))
    llm.evaluator(verdict(True))
    await send(page, "Take a few seconds.")
    await expect(stop_button(page)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    toolbar_stop = page.get_by_test_id("stStatusWidget").get_by_role("button", name="Stop")
    await toolbar_stop.click(timeout=RUN_TIMEOUT_MS)

    await expect(page.get_by_text("Take a few seconds.", exact=True)).to_be_visible()  # not a blank page
    await expect(page.get_by_text("Finished all the same.", exact=True)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    await expect(stop_button(page)).to_have_count(0)
    await expect(page.locator(CHAT_INPUT)).to_be_enabled()
    await no_traceback(page)


async def test_a_hidden_tab_stops_watching_and_a_shown_one_watches_again(
    tabs: Tabs, llm: FakeOpenAI, site: LocalSite
) -> None:
    watcher, other = await watching_a_ticker(tabs, llm, site)
    await watcher.evaluate(VISIBILITY_JS, "hidden")  # as the browser says when the tab is not shown
    await live_views(other, 0)
    await watcher.evaluate(VISIBILITY_JS, "visible")
    await live_views(other, 1)
    await expect(live_image(watcher)).to_be_visible()
    await no_traceback(watcher)


async def test_sigterm_while_a_tab_streams_its_live_view_stops_the_server_cleanly(
    user_browser: Browser, llm: FakeOpenAI, llm_server: FakeOpenAI, site: LocalSite, tmp_path: Path
) -> None:
    """A live stream never ends by itself: it must not hold uvicorn's graceful shutdown, which then
    frees every browser process (the app's lifespan closes the core)."""
    site.route("/ticker", TICKER)
    llm.worker(Reply.tool_call("navigate", {"url": site.url("/ticker")}), Reply.slow(60, Reply.text("Too late.")))
    server = sidekick_server(
        tmp_path / "server",
        OPENAI_BASE_URL=llm_server.base_url,
        OPENAI_API_KEY="test",
        SIDEKICK_ALLOW_PRIVATE_NETWORK="1",
        SIDEKICK_MODEL_RETRIES="0",
    )
    await asyncio.to_thread(server.start)
    try:
        page = await open_app(user_browser, server.url)
        try:
            await send(page, "Watch the ticker.")
            await expect(live_image(page)).to_be_visible(timeout=RUN_TIMEOUT_MS)
            await page.wait_for_function(SHOWN_JS, arg=f"{LIVE_VIEW} img")
            report = server.browser_processes()
            procs = [psutil.Process(pid) for pid in (*report.driver_pids, *report.browser_pids)]
            assert procs, report
            started = time.monotonic()
            code = await asyncio.to_thread(server.stop, signal.SIGTERM, 20.0)
            # uvicorn shuts down gracefully, then re-raises SIGTERM: the process ends by the signal.
            assert not server.killed and code in (0, -signal.SIGTERM), server.output()
            assert time.monotonic() - started < 15, "the stream held the shutdown"
            await wait_until(lambda: not any(is_alive(p) for p in procs), timeout=5, what="every browser process gone")
        finally:
            await page.close()
    finally:
        await asyncio.to_thread(server.close)
