"""The developer console in headless Chromium: sign up → a project → its secret copied once
→ a tier → a customer meters usage through the API → the chart shows it → roll and revoke a
key → the audit log shows each step → the API docs render offline. A screenshot per page; no
page may break its Content-Security-Policy."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from browser_support import Screens
from support import ClientFactory, app_of, serving

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EMAIL = "dev@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
async def server(make_client: ClientFactory) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """The app on a real port for the browser; `api` reaches the same app in-process."""
    api = await make_client(tollhouse_env="development")
    async with serving(app_of(api), lifespan="off") as base:
        yield base, api


async def _meter(api: httpx.AsyncClient, pk: str, secret: str, calls: int) -> None:
    """The developer's backend makes a customer; the customer's browser calls the API."""
    backend = {"Authorization": f"Bearer {secret}"}
    made = await api.post("/api/customers", headers=backend, json={"email": "grace@example.com"})
    assert made.status_code == 201, made.text
    customer = made.json()["customer"]["id"]
    minted = await api.post(f"/api/customers/{customer}/token", headers=backend)
    token = minted.json()["token"]
    for _ in range(calls):
        used = await api.post(
            "/api/data", headers={"X-Publishable-Key": pk, "X-Clerk-Token": token}
        )
        assert used.status_code == 200, used.text
    # Counts reach the database in batches (METERING_FLUSH_SECONDS; the background job is off
    # here with the lifespan): what the flush would write, now.
    await app_of(api).state.meter.flush()


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
    await _meter(api, publishable, secret, calls=3)
    await page.get_by_role("link", name="Customers").click()
    await expect(page.locator('rect.bar[data-value="3"]')).to_have_count(1)
    await expect(page.get_by_text("grace@example.com")).to_be_visible()
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

    # The audit log has every step.
    await page.get_by_role("link", name="Audit log").click()
    for action in ("developer.signup", "project.create", "tier.create", "key.roll", "key.revoke"):
        await expect(page.get_by_role("cell", name=action, exact=True)).to_be_visible()
    await screens.shot(page, "audit")

    # The other pages render, under the same policy.
    project_path = project_url.removeprefix(base)
    for name, path, heading in (
        ("money", "/console/money", "Money"),
        ("project-money", f"{project_path}/money", "Money"),
        ("upstreams", f"{project_path}/upstreams", "Upstreams"),
        ("events", f"{project_path}/events", "Events"),
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

    # On a phone the console stays usable.
    phone = await browser.new_context(base_url=base, viewport={"width": 390, "height": 844})
    await phone.add_cookies(await context.cookies())
    small = await phone.new_page()
    await small.goto(project_url)
    await expect(small.get_by_role("heading", name=re.compile("weather-api"))).to_be_visible()
    await screens.shot(small, "project-on-a-phone")
    await phone.close()
    await context.close()
    assert violations == []
