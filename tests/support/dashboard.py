"""Drive the real dashboard: a `streamlit run` server in a subprocess, and a browser page waiting on it.

    with sidekick_server(tmp_path) as server:
        page = await open_app(browser, server.url)
        await open_address(page, "http://127.0.0.1:PORT/")  # type, click "Open", wait for the run
        server.browser_processes()                          # the server's Chromium and driver only

When is the page idle? Streamlit 1.67 puts two attributes on its root element:
``data-test-connection-state`` (``CONNECTED`` once the websocket is up) and
``data-test-script-state`` (``initial``, ``running``, ``notRunning``). Idle alone cannot tell "my run
has finished" from "my run has not started yet", so every page opened here counts the runs that
finished (an init script watches that attribute) and :func:`rerun` waits for the count to move.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, expect

from sidekick.browser.chromium import find_browser, launch_args
from sidekick.config import Settings
from sidekick.procs import ProcessReport, browser_processes
from tests.support.child import ChildServer

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
# The user's browser comes from the product's own discovery, so the tests run wherever it finds one.
CHROMIUM = find_browser(Settings.load())
CHROMIUM_ARGS = launch_args()

APP = "[data-testid='stApp']"
IDLE = f"{APP}[data-test-connection-state='CONNECTED'][data-test-script-state='notRunning']"
IMAGE = "[data-testid='stImage'] img"
ERROR = "[data-testid='stAlertContentError']"
TOAST = "[data-testid='stToast']"
EXCEPTION = "[data-testid='stException']"
CHAT_INPUT = "[data-testid='stChatInputTextArea']"
LIVE_VIEW = ".st-key-live-view"
"""The live view of the session's browser page (``views.LiveArea``): a caption and the newest frame."""
RUN_TIMEOUT_MS = 60_000  # one turn, with a browser context to open, on a loaded 2-core machine

_RUN_COUNTER = """
window.__finishedRuns = 0;
new MutationObserver((records) => {
  for (const r of records) if (r.oldValue === 'running') window.__finishedRuns++;
}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state']});
"""
_FINISHED_SINCE = f"""(before) => window.__finishedRuns > before && document.querySelector("{IDLE}") !== null"""
# A fresh page's first run: the frontend can render a quick run's start and end at once (the
# counter then never sees "running"; ~1 in 30 tabs opened five at a time did so). Before any run
# the state is "initial", and the server sends a run's start before its elements, so an idle page
# that shows an element has finished its first run.
_FIRST_RUN_DONE = f"""() => document.querySelector("{IDLE}") !== null &&
  (window.__finishedRuns > 0 || document.querySelector("{APP} [data-testid='stElementContainer']") !== null)"""


# -- the server ------------------------------------------------------------------------------
class DashboardServer(ChildServer):
    """``streamlit run streamlit_app.py`` on a free 127.0.0.1 port. States: new → running → stopped.

    ``env`` overrides the inherited environment; a ``None`` value removes the variable. The server's
    output goes to ``workdir/server.log`` (a file, so a chatty server can never block on a full pipe).
    ``port`` fixes the port instead (for secrets that must name it before the start, such as
    ``[auth]``'s redirect URI); it is tried once, as nobody else can choose it for us.
    """

    what = "The dashboard"

    def __init__(
        self,
        workdir: Path,
        *,
        env: Mapping[str, str | None] | None = None,
        args: Sequence[str] = (),
        app: str = "streamlit_app.py",
        startup_timeout: float = 60.0,
        port: int | None = None,
    ) -> None:
        super().__init__(workdir, startup_timeout=startup_timeout)
        self.env = dict(env or {})
        self.args = list(args)
        self.app = app
        self.fixed_port = port
        self.port = port

    @property
    def url(self) -> str:
        return f"{self.origin}/"

    def browser_processes(self, *, memory: bool = False) -> ProcessReport:
        """Chromium and Playwright-driver processes descending from the server (never anyone else's)."""
        return browser_processes(self.pid, memory=memory)

    def process_count(self) -> int:
        return self.browser_processes().processes

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, attempts: int = 3) -> DashboardServer:
        assert self._proc is None, "a DashboardServer starts once"
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value

        def command(port: int) -> list[str]:
            return [sys.executable, "-m", "streamlit", "run", self.app,
                    "--server.headless", "true", "--server.port", str(port),
                    "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
                    "--server.fileWatcherType", "none", *self.args]  # fmt: skip

        self._start(command, self._healthy, env=env, port=self.fixed_port, attempts=attempts)
        return self

    def _healthy(self, opener: urllib.request.OpenerDirector) -> bool:
        with opener.open(f"{self.url}_stcore/health", timeout=2) as reply:
            return bool(reply.read().decode().strip() == "ok")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig``, wait for the server to exit, SIGKILL it only if it does not. Returns its exit code.

        It remembers the server's descendants first, so :meth:`close` can reap any it left behind.
        """
        code = self._signal(sig, timeout)
        if code is None:
            raise RuntimeError("the server was not started")
        return code

    def close(self, grace: float = 10.0) -> None:
        """Stop the server and reap what it left: descendants still alive ``grace`` s later are killed."""
        self._stop(grace)


def sidekick_server(
    workdir: Path, *, secrets: str = "", port: int | None = None, **env: str | None
) -> DashboardServer:
    """The dashboard as the e2e tests want it: fast session release, a private data folder, no model,
    local pages allowed.

    A secrets file of ours (empty unless ``secrets`` gives its TOML) stands in for
    `.streamlit/secrets.toml`, so a developer's real API key never reaches these tests (Streamlit
    copies root-level secrets into the environment). ``port``: see :class:`DashboardServer`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    secrets_file = workdir / "secrets.toml"
    secrets_file.write_text(secrets)
    overrides: dict[str, str | None] = {
        "SIDEKICK_SESSION_GRACE_SECONDS": "1",
        "SIDEKICK_DATA_DIR": str(workdir / "data"),
        "OPENAI_API_KEY": None,
        # The test site lives on 127.0.0.1, which the web policy denies by default.
        "SIDEKICK_ALLOW_PRIVATE_NETWORK": "1",
        **env,
    }
    return DashboardServer(workdir, env=overrides, args=["--secrets.files", str(secrets_file)], port=port)




async def stable_process_count(server: DashboardServer, settle: float = 2.0, timeout: float = 60.0) -> int:
    """The server's browser process count once it is above zero and has not changed for ``settle`` s."""
    deadline = time.monotonic() + timeout
    count, since = server.process_count(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = server.process_count()
        if now != count:
            count, since = now, time.monotonic()
        elif count > 0 and time.monotonic() - since >= settle:
            return count
    raise TimeoutError(f"the server's browser processes did not settle within {timeout:g} s (last: {count})")


async def wait_idle(page: Page, timeout: float = 60.0) -> None:
    """Connected, and no script run in progress."""
    await page.wait_for_selector(IDLE, state="attached", timeout=timeout * 1000)


async def first_run(page: Page, timeout: float = 60.0) -> None:
    """After a navigation to the dashboard (a redirect back to it, a reload): its first run finished."""
    await page.wait_for_function(_FIRST_RUN_DONE, timeout=timeout * 1000)


async def rerun(page: Page, action: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> None:
    """Do ``action`` (a click, a submit) and wait until the script run it started has finished."""
    before = await page.evaluate("window.__finishedRuns")
    await action()
    await page.wait_for_function(_FINISHED_SINCE, arg=before, timeout=timeout * 1000)


async def open_app(browser: Browser | BrowserContext, url: str, timeout: float = 60.0) -> Page:
    """A new tab on the dashboard, returned once its first script run has finished."""
    page = await browser.new_page()
    try:
        await page.add_init_script(_RUN_COUNTER)
        await page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
        await first_run(page, timeout)
    except BaseException:
        await page.close()
        raise
    return page


class Tabs:
    """Tabs of one user (one browser context) on the dashboard."""

    def __init__(self, context: BrowserContext, url: str) -> None:
        self.context = context
        self.url = url

    async def open(self) -> Page:
        return await open_app(self.context, self.url)


async def open_address(page: Page, text: str) -> None:
    """Type ``text`` into "Web address", click "Open", and wait for that run to finish."""
    await page.get_by_label("Web address").fill(text)
    await rerun(page, page.get_by_role("button", name="Open", exact=True).click)


async def send(page: Page, text: str) -> None:
    """Type a message and send it. Returns at once: the run goes on while the script follows it."""
    box = page.locator(CHAT_INPUT)
    await expect(box).to_be_enabled(timeout=RUN_TIMEOUT_MS)
    await box.fill(text)
    await box.press("Enter")


async def save_artifacts(context: BrowserContext, name: str) -> None:
    """What each open tab of ``context`` shows, saved as ``<name>-<i>`` (a failure only says so:
    an artifact must never hide the test's own result)."""
    for i, page in enumerate(p for p in context.pages if not p.is_closed()):
        try:
            await save_artifact(page, f"{name}-{i}")
        except Exception as exc:
            print(f"could not save an artifact of {page.url}: {exc}")


async def metric(page: Page, label: str) -> str:
    """The value an ``st.metric`` shows under ``label``."""
    box = page.locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text=label)
    )
    return (await box.locator("[data-testid='stMetricValue']").inner_text()).strip()


async def save_artifact(page: Page, name: str) -> Path:
    """A full-page PNG of ``page`` at ``tests/artifacts/<name>.png`` (the folder is git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".png")
    await page.screenshot(path=str(path), full_page=True)
    return path
