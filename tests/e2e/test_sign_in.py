"""Signing in to the dashboard through a real OpenID Connect provider that none of us wrote.

The provider is npm's `oidc-provider` (tests/support/oidc), on its own 127.0.0.1 port; the dashboard
is a real `streamlit run` whose secrets hold an ``[auth]`` section for it; each person is a browser
context of the user's Chromium, and signs in by typing their account and password into the
provider's form. Streamlit's redirect URI must name the dashboard's port, and the provider's client
must know that URI before the dashboard starts, so the port is chosen first.

Sign-out goes through the provider too (Streamlit sends the browser to its end-session endpoint),
where the person confirms, and comes back to the dashboard's sign-in page.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from tests.support.child import free_port
from tests.support.dashboard import (
    CHAT_INPUT,
    EXCEPTION,
    RUN_TIMEOUT_MS,
    TOAST,
    DashboardServer,
    first_run,
    open_app,
    save_artifact,
    save_artifacts,
    send,
    sidekick_server,
    wait_idle,
)
from tests.support.fakes.openai_server import FakeOpenAI, Reply
from tests.support.oidc import ALICE, BOB, Account, OidcProvider
from tests.support.runs import verdict

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

NOT_FOUND = "That conversation was not found, so a new one was started."

MakeContext = Callable[[], Awaitable[BrowserContext]]


# -- the provider, the dashboard, the people ------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def redirect_uri(dashboard_port: int) -> str:
    return f"http://127.0.0.1:{dashboard_port}/oauth2callback"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, redirect_uri: str) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path_factory.mktemp("oidc"), redirect_uris=[redirect_uri]) as op:
        yield op


@pytest.fixture(scope="module")
def dashboard(
    tmp_path_factory: pytest.TempPathFactory,
    provider: OidcProvider,
    llm_server: FakeOpenAI,
    dashboard_port: int,
    redirect_uri: str,
) -> Iterator[DashboardServer]:
    """Overrides conftest's: sign-in through ``provider``, and a model (the fake)."""
    server = sidekick_server(
        tmp_path_factory.mktemp("dashboard"),
        secrets=provider.streamlit_secrets(redirect_uri),
        port=dashboard_port,
        OPENAI_BASE_URL=llm_server.base_url,
        OPENAI_API_KEY="test",
        SIDEKICK_MODEL_RETRIES="0",
    )
    with server:
        yield server


async def _close_contexts(contexts: list[BrowserContext], name: str) -> None:
    """Save what each context's tabs show, then close it (even if saving fails)."""
    for c, context in enumerate(contexts):
        try:
            await save_artifacts(context, f"{name}-person{c}-tab")
        finally:
            await context.close()


@pytest.fixture
async def person(user_browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[MakeContext]:
    """A factory of people: each call is a new browser context (its own cookies), all closed after."""
    made: list[BrowserContext] = []

    async def make() -> BrowserContext:
        context = await user_browser.new_context(viewport={"width": 1280, "height": 900})
        made.append(context)
        context.set_default_timeout(30_000)
        return context

    try:
        yield make
    finally:
        await _close_contexts(made, request.node.name)


# -- helpers ---------------------------------------------------------------------------------------
def sidebar(page: Page) -> Locator:
    return page.locator("[data-testid='stSidebar']")


def signed_in_as(page: Page) -> Locator:
    return sidebar(page).locator("[data-testid='stCaptionContainer']", has_text="Signed in as")


async def on_sign_in_page(page: Page) -> None:
    await expect(page.get_by_test_id("stMain").get_by_role("button", name="Sign in")).to_be_visible()
    await expect(page.get_by_text("Sign in to use Sidekick and see your conversations.")).to_be_visible()
    await expect(page.locator(CHAT_INPUT)).to_have_count(0)
    await expect(signed_in_as(page)).to_have_count(0)


async def sign_in(page: Page, provider: OidcProvider, server: DashboardServer, account: Account) -> None:
    """From the dashboard's sign-in page, through the provider's form, back to the dashboard."""
    await page.get_by_test_id("stMain").get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{provider.issuer}/interaction/**")
    await expect(page.get_by_role("heading", name="Sign in to the test provider")).to_be_visible()
    await page.get_by_label("Account").fill(account.id)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{server.url}**", wait_until="domcontentloaded")
    await first_run(page)
    await expect(signed_in_as(page)).to_have_text(f"Signed in as {account.name}")
    await expect(signed_in_as(page).locator("strong")).to_have_text(account.name)


async def signed_in_tab(
    context: BrowserContext, provider: OidcProvider, server: DashboardServer, account: Account
) -> Page:
    page = await open_app(context, server.url)
    await on_sign_in_page(page)
    await sign_in(page, provider, server, account)
    await expect(page.locator(CHAT_INPUT)).to_be_visible()
    return page


async def ask(page: Page, text: str, answer: str) -> None:
    """Send a message and wait for its answer, and for the script to settle after the run."""
    await send(page, text)
    await expect(page.get_by_text(answer, exact=True)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    # The script reruns once the run is over (without the Stop button): wait for that rerun.
    await expect(page.get_by_test_id("stMain").get_by_role("button", name="Stop")).to_have_count(0)
    await wait_idle(page)
    await expect(page.locator(CHAT_INPUT)).to_be_enabled()


def thread_of(page: Page) -> str:
    return parse_qs(urlsplit(page.url).query)["thread"][0]


async def no_traceback(page: Page) -> None:
    await expect(page.locator(EXCEPTION)).to_have_count(0)
    assert "Traceback" not in await page.locator("body").inner_text()


# -- signing in and out ----------------------------------------------------------------------------
async def test_the_dashboard_asks_to_sign_in_first(dashboard: DashboardServer, person: MakeContext) -> None:
    page = await open_app(await person(), dashboard.url)
    await on_sign_in_page(page)
    await no_traceback(page)


async def test_alice_signs_in_with_the_provider_and_out_again(
    dashboard: DashboardServer, provider: OidcProvider, person: MakeContext
) -> None:
    page = await signed_in_tab(await person(), provider, dashboard, ALICE)
    await expect(sidebar(page).get_by_role("button", name="Sign out")).to_be_visible()
    await no_traceback(page)
    await save_artifact(page, "sign-in-alice")

    await sidebar(page).get_by_role("button", name="Sign out").click()
    # Streamlit ends the provider's session too: the provider asks, Alice confirms.
    await page.wait_for_url(f"{provider.issuer}/session/end**")
    await page.get_by_role("button", name="Yes, sign me out").click()
    await page.wait_for_url(f"{dashboard.url}**", wait_until="domcontentloaded")
    await first_run(page)
    await on_sign_in_page(page)
    # Signed out at the provider as well: signing in again asks for the password again.
    await page.get_by_test_id("stMain").get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{provider.issuer}/interaction/**")
    await expect(page.get_by_label("Password")).to_be_visible()


async def test_alice_and_bob_each_see_their_own_name(
    dashboard: DashboardServer, provider: OidcProvider, person: MakeContext
) -> None:
    alice = await signed_in_tab(await person(), provider, dashboard, ALICE)
    bob = await signed_in_tab(await person(), provider, dashboard, BOB)
    await expect(signed_in_as(bob)).to_have_text(f"Signed in as {BOB.name}")
    await alice.reload(wait_until="domcontentloaded")
    await first_run(alice)
    await expect(signed_in_as(alice)).to_have_text(f"Signed in as {ALICE.name}")  # still Alice
    await save_artifact(bob, "sign-in-bob")


async def test_a_wrong_password_keeps_the_person_at_the_provider(
    dashboard: DashboardServer, provider: OidcProvider, person: MakeContext
) -> None:
    page = await open_app(await person(), dashboard.url)
    await page.get_by_test_id("stMain").get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{provider.issuer}/interaction/**")
    await page.get_by_label("Account").fill(ALICE.id)
    await page.get_by_label("Password").fill(BOB.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong account or password.")
    assert page.url.startswith(provider.issuer)


# -- whose conversation is it ----------------------------------------------------------------------
@dataclass(frozen=True)
class Conversation:
    page: Page  # Alice's tab on it
    thread: str
    asked: str
    answer: str


@pytest.fixture
async def alices_conversation(
    dashboard: DashboardServer, provider: OidcProvider, llm: FakeOpenAI, person: MakeContext
) -> Conversation:
    """Alice, signed in, has asked one question and had its answer. The words are new each time, so
    what another test left behind is never mistaken for it."""
    word = secrets.token_hex(4)
    asked, answer = f"Which tide table does lighthouse {word} keep?", f"Lighthouse {word} keeps the 1911 table."
    page = await signed_in_tab(await person(), provider, dashboard, ALICE)
    llm.worker(Reply.text(answer))
    llm.evaluator(verdict(True))
    await ask(page, asked, answer)
    await expect(sidebar(page).get_by_role("button", name=asked)).to_be_visible()
    return Conversation(page, thread_of(page), asked, answer)


async def test_bobs_sidebar_does_not_list_alices_conversation(
    dashboard: DashboardServer, provider: OidcProvider, person: MakeContext, alices_conversation: Conversation
) -> None:
    bob = await signed_in_tab(await person(), provider, dashboard, BOB)
    await expect(signed_in_as(bob)).to_have_text(f"Signed in as {BOB.name}")
    await expect(sidebar(bob).get_by_role("button", name=alices_conversation.asked)).to_have_count(0)
    assert alices_conversation.asked not in await bob.locator("body").inner_text()
    await no_traceback(bob)


async def test_bob_cannot_open_alices_conversation_by_its_address(
    dashboard: DashboardServer, provider: OidcProvider, person: MakeContext, alices_conversation: Conversation
) -> None:
    thread, asked, answer = alices_conversation.thread, alices_conversation.asked, alices_conversation.answer
    bob_context = await person()
    await signed_in_tab(bob_context, provider, dashboard, BOB)
    bob = await open_app(bob_context, f"{dashboard.url}?thread={thread}")  # signed in by his cookie
    await expect(signed_in_as(bob)).to_have_text(f"Signed in as {BOB.name}")
    await expect(bob.locator(TOAST, has_text=NOT_FOUND)).to_be_visible()
    body = await bob.locator("body").inner_text()
    assert asked not in body and answer not in body
    assert thread_of(bob) != thread  # a new conversation of his own
    await no_traceback(bob)

    # Alice still has hers, in a fresh tab on its address.
    again = await open_app(alices_conversation.page.context, f"{dashboard.url}?thread={thread}")
    chat = again.locator("[data-testid='stChatMessage']")
    await expect(chat).to_have_count(2)
    await expect(chat.nth(0)).to_contain_text(asked)
    await expect(chat.nth(1)).to_contain_text(answer)
    await expect(again.locator(TOAST, has_text=NOT_FOUND)).to_have_count(0)
    await expect(sidebar(again).get_by_role("button", name=asked)).to_be_visible()


def test_the_provider_log_shows_no_server_error(provider: OidcProvider) -> None:
    """Whatever the browser saw, the provider itself never failed a request."""
    assert "server_error" not in provider.output()
    assert "interaction failed" not in provider.output()
