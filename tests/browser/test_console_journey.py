"""The developer console in headless Chromium: sign up → a project → its secret copied once
→ a tier → a customer meters usage through the API → the chart and the quota headroom show it
→ roll and revoke a key → connect Stripe (the local peer's OAuth consent, back on Money) → a
paid tier with an image from the project's assets, its submit button busy while it syncs →
a sale (the customer pays at the peer's checkout, the webhook lands) appears under Money and
Events → the audit log shows each step → the API docs render offline → the pages on a phone.
A screenshot per page (tests/browser/screenshots/console); no page may break its
Content-Security-Policy."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from browser_support import Screens
from stripe_peer import StripePeer
from support import ADMIN_KEY, ClientFactory, app_of, serving
from test_assets import png
from test_billing_stripe import WHSEC, stripe_settings
from tollhouse.stripe_sandbox.webhooks import webhook_endpoint

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EMAIL = "dev@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
async def server(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """The app on a real port for the browser, with the local Stripe peer (its consent and
    checkout pages, webhooks delivered to this app); `api` reaches the same app in-process."""
    api = await make_client(tollhouse_env="development", **stripe_settings(stripe_peer))
    async with serving(app_of(api), lifespan="off") as base:
        webhook_endpoint(stripe_peer, f"{base}/webhook/stripe", WHSEC, livemode=False)
        yield base, api


async def _meter(api: httpx.AsyncClient, pk: str, secret: str, calls: int) -> dict[str, str]:
    """The developer's backend makes a customer; the customer's browser calls the API."""
    backend = {"Authorization": f"Bearer {secret}"}
    made = await api.post("/api/customers", headers=backend, json={"email": "grace@example.com"})
    assert made.status_code == 201, made.text
    customer = made.json()["customer"]["id"]
    minted = await api.post(f"/api/customers/{customer}/token", headers=backend)
    token = minted.json()["token"]
    customer_headers = {"X-Publishable-Key": pk, "X-Clerk-Token": token}
    for _ in range(calls):
        used = await api.post("/api/data", headers=customer_headers)
        assert used.status_code == 200, used.text
    # Counts reach the database in batches (METERING_FLUSH_SECONDS; the background job is off
    # here with the lifespan): what the flush would write, now.
    await app_of(api).state.meter.flush()
    return customer_headers


async def _click(page: Page, name: str | re.Pattern[str]) -> None:
    await page.get_by_role("button", name=name).first.click()
    await page.wait_for_load_state()


async def test_console_journey(browser: Browser, server: tuple[str, httpx.AsyncClient]) -> None:
    base, api = server
    screens = Screens("console")
    context = await browser.new_context(
        base_url=base, permissions=["clipboard-read", "clipboard-write"]
    )
    page = await context.new_page()
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", watch)

    # Sign up: straight to the first-run guide.
    await page.goto("/console/signup")
    await screens.shot(page, "signup")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await _click(page, "Create account")
    await expect(page.get_by_text("Get started in three steps")).to_be_visible()
    await screens.shot(page, "first-run")

    # A project: its keys once, with a copy button and a curl that works.
    await page.get_by_label("Name").fill("weather-api")
    await _click(page, "Create project")
    secret = (await page.locator("#new-secret").inner_text()).strip()
    publishable = (await page.locator("#new-publishable").inner_text()).strip()
    assert secret.startswith("sk_test_")
    await page.locator('button[data-copy="new-secret"]').click()
    await expect(page.locator('button[data-copy="new-secret"]')).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    await expect(page.locator("#try-curl")).to_contain_text(f"Bearer {secret}")
    await expect(page.get_by_role("navigation", name="Test or live")).to_be_visible()
    await screens.shot(page, "project-created")
    # The project's own page (the test/live switch links to it) never shows the secret again.
    project_url = await page.get_by_role("link", name="Test").get_attribute("href")
    assert project_url is not None
    await page.goto(project_url)
    assert secret not in await page.content()

    # A tier the customer will be on.
    await page.get_by_role("link", name="Tiers").click()
    await page.get_by_label("Name", exact=True).fill("free")
    await page.get_by_label("Usage limit per period").fill("10")
    await _click(page, "Create")
    await expect(page.get_by_role("cell", name="free", exact=False).first).to_be_visible()
    await screens.shot(page, "tiers")

    # Usage through the API shows on the chart.
    customer = await _meter(api, publishable, secret, calls=3)
    await page.get_by_role("link", name="Customers").click()
    await expect(page.locator('rect.bar[data-value="3"]')).to_have_count(1)
    await expect(page.get_by_text("grace@example.com")).to_be_visible()
    await expect(page.get_by_text("3 / 10 · 7 left")).to_be_visible()
    await expect(page.locator('meter[value="3"]')).to_have_count(1)
    await screens.shot(page, "customers")
    await page.get_by_role("link", name=re.compile("^cus_")).click()
    await expect(page.get_by_role("img", name=re.compile("3 in total"))).to_be_visible()
    await screens.shot(page, "customer")

    # Roll the secret key (no grace), then revoke the new one.
    await page.goto(project_url)
    await page.get_by_label(re.compile("Grace hours for sk_")).first.fill("0")
    await _click(page, re.compile("^Roll sk_"))
    await expect(page.get_by_text("the old one stopped working now")).to_be_visible()
    rolled = (await page.locator("#new-secret").inner_text()).strip()
    assert rolled != secret
    await screens.shot(page, "key-rolled")
    await _click(page, re.compile("^Revoke sk_"))
    await expect(page.get_by_text(re.compile(r"Key sk_test_.+ revoked\."))).to_be_visible()
    await screens.shot(page, "key-revoked")
    for key in (secret, rolled):
        refused = await api.get("/api/tiers", headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 401

    project_path = project_url.removeprefix(base)

    # Connect Stripe: the peer's consent page, and the OAuth round trip lands back on Money.
    await page.goto("/console/money")
    await screens.shot(page, "money-not-connected")
    await page.get_by_role("link", name="Connect test").click()
    await expect(page.get_by_role("button", name="Connect my Stripe account")).to_be_visible()
    await screens.shot(page, "stripe-consent")
    await page.get_by_role("button", name="Connect my Stripe account").click()
    await page.wait_for_url(re.compile(r"/console/money\?stripe=connected$"))
    await expect(page.get_by_text("Stripe is connected.")).to_be_visible()
    await expect(page.get_by_role("cell", name=re.compile(r"^connected "))).to_be_visible()
    await screens.shot(page, "money-connected")

    # A paid tier: its button shows progress while the tier is saved and synced to Stripe.
    await page.goto(f"{project_path}/tiers")
    await page.get_by_label("Name", exact=True).fill("pro")
    await page.get_by_label("Price (cents)").fill("2900")
    await page.get_by_label("Usage limit per period").fill("100")
    # The page's own submit handler runs first (busy.js); the test's, after it, keeps the
    # browser from leaving, so the busy button can be seen.
    await page.evaluate(
        "window.hold = (e) => e.preventDefault(); document.addEventListener('submit', hold)"
    )
    await page.get_by_role("button", name="Create").click()
    busy = page.locator("button.is-busy")
    await expect(busy).to_have_text("Creating and syncing with Stripe…")
    await expect(busy).to_have_attribute("aria-busy", "true")
    await screens.shot(page, "tier-busy")
    # A second submit of a busy form is ignored (no duplicate tier).
    assert await page.evaluate(
        "(() => { const f = document.querySelector('button.is-busy').form;"
        " const e = new SubmitEvent('submit', {bubbles: true, cancelable: true});"
        " f.dispatchEvent(e); return e.defaultPrevented; })()"
    )
    # Back to idle as a page restored from the browser's cache is; then submit for real.
    await page.evaluate(
        "document.removeEventListener('submit', hold);"
        " window.dispatchEvent(new PageTransitionEvent('pageshow'))"
    )
    await expect(page.locator("button.is-busy")).to_have_count(0)
    await _click(page, "Create")
    await expect(page.get_by_text(re.compile(r"synced price_"))).to_be_visible()

    # Its image: uploaded to the project's assets, picked by its thumbnail.
    await page.get_by_role("link", name="pro", exact=True).click()
    await page.get_by_label("Upload an image").set_input_files(
        files=[{"name": "mug.png", "mimeType": "image/png", "buffer": png(48, 48)}]
    )
    await page.get_by_role("button", name="Upload", exact=True).click()
    await page.wait_for_load_state()
    await expect(page.get_by_text("Uploaded mug.png.")).to_be_visible()
    await page.locator("label.pick").filter(has_text="mug.png").click()
    await _click(page, "Use this image")
    await expect(page.get_by_text("Image chosen.")).to_be_visible()
    await expect(page.get_by_role("img", name="Current image of pro")).to_be_visible()
    await screens.shot(page, "tier-image")

    # A sale: the customer checks out at the peer; the webhook lands before the redirect back.
    landing = f"{base}{project_path}/money"
    started = await api.post(
        "/api/create-checkout",
        headers=customer,
        json={"tier": "pro", "successUrl": landing, "cancelUrl": landing},
    )
    assert started.status_code == 200, started.text
    await page.goto(started.json()["url"])
    await screens.shot(page, "stripe-checkout")
    await page.get_by_role("button", name="Subscribe").click()
    await page.wait_for_url(landing)
    sales = page.locator("figure.chart.revenue figcaption")
    await expect(sales).to_contain_text("Sales per day: 29.00")
    await expect(page.get_by_role("cell", name="checkout.session.completed")).to_be_visible()
    await expect(page.get_by_role("cell", name="grace@example.com")).to_be_visible()
    await expect(page.locator("figure.line-chart figcaption")).to_contain_text(
        "Live users per day: 1"
    )
    await screens.shot(page, "project-money-sale")
    await page.goto(f"{project_path}/events")
    await expect(page.get_by_text("checkout.session.completed").first).to_be_visible()
    await screens.shot(page, "events")

    # The audit log has every step.
    await page.get_by_role("link", name="Audit log", exact=True).click()
    for action in (
        "developer.signup",
        "project.create",
        "tier.create",
        "key.roll",
        "key.revoke",
        "stripe.connect.start",
        "stripe.connect",
        "asset.upload",
        "tier.image",
    ):
        await expect(page.get_by_role("cell", name=action, exact=True).first).to_be_visible()
    await screens.shot(page, "audit")

    # The other pages render, under the same policy.
    for name, path, heading in (
        ("money", "/console/money?mode=test", "Money"),
        ("upstreams", f"{project_path}/upstreams", "Upstreams"),
        ("plan", "/console/plan", "Platform plan"),
        ("tokens", "/console/tokens", "Personal access tokens"),
    ):
        await page.goto(path)
        await expect(page.get_by_role("heading", name=heading, exact=False).first).to_be_visible()
        await screens.shot(page, name)

    # The API docs, offline, and ready to authorise.
    await page.goto("/docs")
    await expect(page.get_by_role("button", name="Authorize")).to_be_visible(timeout=15_000)
    await screens.shot(page, "docs")

    # The operator's pages (the admin key's way in; operator accounts are proven over HTTP).
    operator = await browser.new_context(base_url=base)
    ops = await operator.new_page()
    ops.on("console", watch)
    await ops.goto("/console/operator/signin")
    await ops.get_by_label("Admin key").fill(ADMIN_KEY)
    await ops.get_by_role("button", name="Sign in").click()
    await ops.wait_for_url(re.compile(r"/console/operator$"))
    await expect(ops.get_by_role("cell", name=EMAIL)).to_be_visible()
    await expect(ops.get_by_text("Every balance matches its log")).to_be_visible()
    await screens.shot(ops, "operator")
    await operator.close()

    # On a phone the console stays usable.
    phone = await browser.new_context(base_url=base, viewport={"width": 390, "height": 844})
    await phone.add_cookies(await context.cookies())
    small = await phone.new_page()
    small.on("console", watch)
    await small.goto(project_url)
    await expect(small.get_by_role("heading", name=re.compile("weather-api"))).to_be_visible()
    assert await small.evaluate("document.documentElement.scrollWidth") <= 390
    await screens.shot(small, "project-on-a-phone")
    await small.goto(f"{project_path}/money")
    await expect(small.locator("figure.chart.revenue")).to_be_visible()
    # Nothing wider than the phone: tables scroll inside their own box.
    assert await small.evaluate("document.documentElement.scrollWidth") <= 390
    await screens.shot(small, "money-on-a-phone")
    await phone.close()
    await context.close()
    assert violations == []
