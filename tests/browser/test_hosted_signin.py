"""The hosted sign-in journey in headless Chromium, as an app built on `@dream-api/sdk` sends
its users through it: sign up → verify through the mail outbox → land back on the app with
`__clerk_jwt` → the token verifies against our JWKS and meters on /api/usage → upgrade →
/refresh lands with the new plan → the account page. A screenshot per page; no page may
break its Content-Security-Policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from playwright.async_api import Browser, ConsoleMessage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from browser_support import Screens
from platform_fixtures import Keys, database, new_project
from support import ClientFactory, app_of, in_thread, serving
from tollhouse.tenancy import origins

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EMAIL = "grace@example.com"
PASSWORD = "a long enough password"


async def _app_page(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>The app</title><h1>Welcome back to the app</h1>")


@pytest.fixture
def app_origin() -> Any:
    """The developer's app: a page the hosted pages send people back to."""
    with in_thread(Starlette(routes=[Route("/{path:path}", _app_page)]), "the app") as url:
        yield url


@pytest.fixture
async def server(make_client: ClientFactory) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """The app on a real port for the browser; `api` reaches the same app in-process."""
    api = await make_client(tollhouse_env="development")
    async with serving(app_of(api), lifespan="off") as base:
        yield base, api


def token_in(url: str) -> str:
    return parse_qs(urlsplit(url).query)["__clerk_jwt"][0]


async def test_sign_up_verify_sign_in_refresh_and_account(
    browser: Browser, server: tuple[str, httpx.AsyncClient], app_origin: str
) -> None:
    base, api = server
    keys: Keys = await new_project(api, name="Stargazer")
    async with database(api).session() as session:
        await origins.allow(session, keys.project_id, app_origin)
    screens = Screens("hosted-signin")
    redirect = f"{app_origin}/dashboard"
    query = urlencode({"pk": keys.pk, "redirect": redirect})
    page = await browser.new_page()
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", watch)

    # Sign up (the SDK's getSignUpUrl).
    await page.goto(f"{base}/signup?{query}")
    await screens.shot(page, "signup")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("First name").fill("Grace")
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_selector("text=Check your email")
    await screens.shot(page, "check-mail")

    # Verify through the development outbox.
    await page.get_by_role("link", name="development outbox").click()
    await page.wait_for_selector("text=confirm your email")
    await screens.shot(page, "outbox")
    await page.locator("a[href*='/verify?']").first.click()
    await page.wait_for_selector("text=Confirm your email")
    await screens.shot(page, "verify")
    await page.get_by_role("button", name="Confirm and continue").click()
    await page.wait_for_url(f"{redirect}?*")
    await screens.shot(page, "landed-after-signup")

    # The token the SDK's auth.init() reads: our ES256 token, verified with our JWKS.
    token = token_in(page.url)
    jwks = (await api.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(token, key, algorithms=["ES256"], audience=keys.project_id)
    assert claims["plan"] == "free"
    assert claims["publishableKey"] == keys.pk
    as_user = {**keys.publishable, "X-Clerk-Token": token}
    assert (await api.post("/api/data", headers=as_user)).json()["usage"]["usageCount"] == 1

    # Sign out, then sign in again (getSignInUrl).
    await page.goto(f"{base}/account?{query}")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_selector("text=Sign in to Stargazer")
    await screens.shot(page, "signin")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{redirect}?*")
    assert jwt.decode(token_in(page.url), key, algorithms=["ES256"], audience=keys.project_id)

    # An upgrade, then the refresh page (getRefreshUrl) hands back the new plan.
    user_id = claims["sub"]
    upgraded = await api.patch(
        f"/api/customers/{user_id}", json={"plan": "pro"}, headers=keys.secret
    )
    assert upgraded.status_code == 200, upgraded.text
    await page.goto(f"{base}/refresh?{query}")
    await page.wait_for_url(f"{redirect}?*")
    await screens.shot(page, "landed-after-refresh")
    refreshed = jwt.decode(token_in(page.url), key, algorithms=["ES256"], audience=keys.project_id)
    assert refreshed["plan"] == "pro"
    usage = await api.get(
        "/api/usage", headers={**keys.publishable, "X-Clerk-Token": token_in(page.url)}
    )
    assert usage.json()["plan"] == "pro"
    assert usage.json()["limit"] == 10

    # The account page (getCustomerPortalUrl): plan, details.
    await page.goto(f"{base}/account?{query}")
    await page.wait_for_selector("text=Your account")
    assert await page.locator(".plan").inner_text() == "Pro"
    await page.get_by_label("Last name").fill("Hopper")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_selector("text=Your details are saved.")
    await screens.shot(page, "account")
    customer = await api.get(f"/api/customers/{user_id}", headers=keys.secret)
    assert customer.json()["customer"]["lastName"] == "Hopper"

    # A redirect the project does not allow never receives a token.
    await page.goto(
        f"{base}/signin?" + urlencode({"pk": keys.pk, "redirect": "https://evil.example/"})
    )
    await page.wait_for_selector("text=Redirect not allowed")
    await screens.shot(page, "redirect-refused")
    assert violations == []
    assert screens.count == 9
