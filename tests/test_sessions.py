import asyncio
import time

import pytest

from sidekick.browser.pool import BrowserPool
from sidekick.errors import NavigationError, SessionClosedError
from sidekick.procs import browser_processes
from sidekick.web.urls import normalize_url
from tests.support.fakes.site import LocalSite
from tests.support.runs import MakeRegistry


async def test_reset_frees_the_context_and_its_renderer_processes(
    registries: MakeRegistry, pool: BrowserPool, site: LocalSite
) -> None:
    reg = registries()
    session = reg.get("s1")
    await session.open_url(site.url("/"))
    await pool.warm()
    before = browser_processes(memory=False)
    freed = await reg.reset("s1")
    assert freed.contexts == 1 and freed.processes >= 1 and freed.megabytes > 0
    assert "Freed 1 browser context" in freed.describe()
    after = browser_processes(memory=False)
    assert after.processes < before.processes
    assert pool.open_contexts == 1  # only the warm spare remains
    # The session is still usable after Reset: a fresh context opens on demand.
    shot = await session.open_url(site.url("/about"))
    assert shot.title == "About"
    await reg.aclose()


async def test_reset_of_a_session_without_a_browser_frees_nothing(registries: MakeRegistry, pool: BrowserPool) -> None:
    reg = registries()
    reg.get("s1")
    freed = await reg.reset("s1")
    assert (freed.contexts, freed.processes) == (0, 0)
    assert freed.describe().startswith("Nothing to free")
    assert (await reg.reset("unknown")).contexts == 0
    await reg.aclose()


async def test_end_is_idempotent_and_refuses_later_use(registries: MakeRegistry, site: LocalSite) -> None:
    reg = registries()
    session = reg.get("s1")
    await session.open_url(site.url("/"))
    await reg.end("s1")
    await reg.end("s1")
    assert "s1" not in reg and reg.ended == 1
    with pytest.raises(SessionClosedError):
        await session.open_url(site.url("/"))
    await session.aclose()
    await reg.aclose()


async def test_idle_sessions_lose_their_context_and_get_a_fresh_one_on_next_use(
    registries: MakeRegistry, pool: BrowserPool, site: LocalSite
) -> None:
    reg = registries(idle_seconds=60)
    session = reg.get("s1")
    await session.open_url(site.url("/set-cookie?value=x"))
    await reg.sweep(now=time.monotonic() + 61)
    assert not session.has_browser and "s1" in reg
    await session.open_url(site.url("/cookies"))
    assert await (await session.browser()).page.text_content("#c") == "(none)"
    await reg.aclose()


async def test_watchdog_ends_sessions_streamlit_no_longer_knows_after_the_grace(
    registries: MakeRegistry, pool: BrowserPool, site: LocalSite
) -> None:
    active = {"s1": True, "s2": True}
    reg = registries(is_active=lambda sid: active[sid], grace_seconds=5)
    await reg.get("s1").open_url(site.url("/"))
    reg.get("s2")
    active["s1"] = False
    now = time.monotonic()
    assert await reg.sweep(now) == []  # inside the grace period: a reconnect may still come
    assert await reg.sweep(now + 4) == []
    assert await reg.sweep(now + 6) == ["s1"]
    assert "s1" not in reg and "s2" in reg
    await reg.aclose()


async def test_watchdog_runs_by_itself(registries: MakeRegistry, pool: BrowserPool) -> None:
    reg = registries(grace_seconds=0.1, is_active=lambda sid: False, sweep_interval=0.05)
    reg.get("gone")
    for _ in range(100):
        if "gone" not in reg:
            break
        await asyncio.sleep(0.05)
    assert "gone" not in reg
    await reg.aclose()


async def test_aclose_ends_every_session(registries: MakeRegistry, pool: BrowserPool, site: LocalSite) -> None:
    reg = registries()
    for sid in ("a", "b", "c"):
        await reg.get(sid).open_url(site.url("/"))
    await reg.aclose()
    assert len(reg) == 0
    assert pool.open_contexts <= 1  # at most the warm spare
    with pytest.raises(SessionClosedError):
        reg.get("d")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("example.com", "https://example.com"),
        ("  http://example.com/a?b=1 ", "http://example.com/a?b=1"),
        ("HTTPS://Example.com", "HTTPS://Example.com"),
    ],
)
def test_normalize_url_accepts_what_people_type(typed: str, expected: str) -> None:
    assert normalize_url(typed) == expected


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Type a web address"),
        ("   ", "Type a web address"),
        ("not a url", "spaces"),
        ("file:///etc/passwd", "Only http and https"),
        ("javascript:alert(1)", "Only http and https"),
        ("ftp://example.com", "Only http and https"),
        ("http://", "not a web address"),
        ("x" * 5000, "too long"),
        ("http://a\x00b", "control characters"),
    ],
)
def test_normalize_url_refuses_bad_input_clearly(typed: str, message: str) -> None:
    with pytest.raises(NavigationError, match=message):
        normalize_url(typed)
