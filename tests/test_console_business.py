"""The console's business pages through HTTP: a tier's image picked from the project's
assets, quota headroom per customer, the money charts after a real sale through the Stripe
peer, operator accounts made by the CLI, paging, progress on every form — and the refusals
(no CSRF token, another developer's project, another project's asset)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from hosted_support import csrf_of
from platform_fixtures import database
from support import ADMIN_KEY, PEPPER, ClientFactory, app_of
from test_assets import png
from test_billing_stripe import Shop, shop  # noqa: F401 - the fixture
from test_console_pages import PASSWORD, meter_calls, new_project, post, sign_up
from tollhouse.cli import app as cli
from tollhouse.config import load_settings
from tollhouse.identity.models import User

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client(tollhouse_env="development")


async def upload(client: httpx.AsyncClient, page: str, name: str, data: bytes) -> httpx.Response:
    shown = await client.get(page)
    return await client.post(
        f"{page}/images",
        data={"csrf_token": csrf_of(shown)},
        files={"file": (name, data, "image/png")},
    )


async def test_a_tiers_image_is_picked_from_the_projects_assets(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client)
    project_id, _ = await new_project(client)
    tiers = f"/console/projects/{project_id}/tiers"
    assert (await post(client, tiers, name="pro", price_cents="900")).status_code == 303
    tier = f"{tiers}/pro"

    uploaded = await upload(client, tier, "mug.png", png(4, 4))
    assert uploaded.status_code == 200, uploaded.text
    assert "Uploaded mug.png." in uploaded.text
    key = re.search(r'name="asset_key" value="([^"]+)"', uploaded.text)
    assert key is not None
    assert f'src="/api/assets/{key.group(1)}"' in uploaded.text  # the thumbnail
    assert (await client.get(f"/api/assets/{key.group(1)}")).content == png(4, 4)
    not_an_image = await upload(client, tier, "notes.png", b"plain text, not a picture")
    assert not_an_image.status_code == 415
    assert "Uploaded" not in not_an_image.text

    chosen = await post(client, tier, f"{tier}/image", asset_key=key.group(1))
    assert chosen.status_code == 200, chosen.text
    assert "Image chosen." in chosen.text
    api = await client.get(f"/console/api/v1/projects/{project_id}/tiers/pro")
    assert api.json()["image_url"] == f"http://tollhouse.test/api/assets/{key.group(1)}"
    assert 'alt="Current image of pro"' in chosen.text
    assert (
        f'src="http://tollhouse.test/api/assets/{key.group(1)}"' in (await client.get(tiers)).text
    )

    # Another project's asset is not found through this project, and the image stays.
    other_id, _ = await new_project(client, "other")
    other_tiers = f"/console/projects/{other_id}/tiers"
    assert (await post(client, other_tiers, name="pro")).status_code == 303
    foreign = await upload(client, f"{other_tiers}/pro", "cup.png", png(2, 2))
    foreign_key = re.search(r'name="asset_key" value="([^"]+)"', foreign.text)
    assert foreign_key is not None
    refused = await post(client, tier, f"{tier}/image", asset_key=foreign_key.group(1))
    assert refused.status_code == 404
    api = await client.get(f"/console/api/v1/projects/{project_id}/tiers/pro")
    assert api.json()["image_url"].endswith(key.group(1))

    # Without the form's CSRF token neither an upload nor a choice is taken.
    no_token = await client.post(f"{tier}/image", data={"asset_key": ""})
    assert no_token.status_code == 403
    no_token_upload = await client.post(
        f"{tier}/images", files={"file": ("x.png", png(), "image/png")}
    )
    assert no_token_upload.status_code == 403
    listed = (await client.get("/api/assets", headers=await _secret_of(client, project_id))).json()
    assert [a["key"] for a in listed["assets"]] == [key.group(1)]

    cleared = await post(client, tier, f"{tier}/image", asset_key="")
    assert "Image removed." in cleared.text
    api = await client.get(f"/console/api/v1/projects/{project_id}/tiers/pro")
    assert api.json()["image_url"] is None


async def _secret_of(client: httpx.AsyncClient, project_id: str) -> dict[str, str]:
    made = await client.post(f"/console/api/v1/projects/{project_id}/keys", json={"kind": "secret"})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['plaintext']}"}


async def test_another_developer_cannot_pick_or_upload_images(
    make_client: ClientFactory,
) -> None:
    owner = await make_client(tollhouse_env="development")
    await sign_up(owner, "owner@example.com")
    project_id, _ = await new_project(owner)
    assert (await post(owner, f"/console/projects/{project_id}/tiers", name="pro")).status_code
    intruder = httpx.AsyncClient(transport=owner._transport, base_url=owner.base_url)
    await sign_up(intruder, "intruder@example.com")
    own_id, _ = await new_project(intruder, "mine")
    own_page = f"/console/projects/{own_id}"
    tier = f"/console/projects/{project_id}/tiers/pro"
    picked = await post(intruder, own_page, f"{tier}/image", asset_key="")
    assert picked.status_code == 404
    shown = await intruder.get(own_page)
    uploaded = await intruder.post(
        f"{tier}/images",
        data={"csrf_token": csrf_of(shown)},
        files={"file": ("x.png", png(), "image/png")},
    )
    assert uploaded.status_code == 404
    quota = await intruder.get(f"/console/api/v1/projects/{project_id}/users/{_NOBODY}/quota")
    assert quota.status_code == 404


_NOBODY = "00000000-0000-4000-8000-000000000000"


async def test_quota_headroom_per_customer_on_the_list_and_the_detail(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client)
    project_id, secret = await new_project(client)
    assert (
        await post(client, f"/console/projects/{project_id}/tiers", name="free", limit="10")
    ).status_code == 303
    backend = {"Authorization": f"Bearer {secret}"}
    ids = []
    for email in ("grace@example.com", "linus@example.com"):
        made = await client.post("/api/customers", headers=backend, json={"email": email})
        ids.append(made.json()["customer"]["id"])
    await meter_calls(client, project_id, secret, ids[0], 3)
    async with database(client).session() as session:
        grace, linus = [
            await session.scalar(select(User.id).where(User.external_id == customer))
            for customer in ids
        ]
        # Linus is on a plan the project does not sell: no headroom to show.
        user = await session.get_one(User, linus)
        user.plan = "gold"
        await session.commit()

    # The live count, before any flush reaches the database: the meter's own.
    listing = await client.get(f"/console/projects/{project_id}/customers")
    assert listing.status_code == 200
    row = re.search(r"grace@example.com.*?</tr>", listing.text, re.S)
    assert row is not None
    assert 'value="3"' in row.group(0)
    assert "3 / 10 · <strong>7</strong> left" in row.group(0)
    other = re.search(r"linus@example.com.*?</tr>", listing.text, re.S)
    assert other is not None
    assert "no tier" in other.group(0)

    detail = await client.get(f"/console/projects/{project_id}/customers/{grace}")
    assert "<strong>7</strong> left" in detail.text
    assert "7 of 10 remaining" in detail.text
    quota = await client.get(f"/console/api/v1/projects/{project_id}/users/{grace}/quota")
    assert quota.status_code == 200
    body = quota.json()["quota"]
    assert (body["plan"], body["used"], body["limit"], body["remaining"]) == ("free", 3, 10, 7)
    none = await client.get(f"/console/api/v1/projects/{project_id}/users/{linus}/quota")
    assert none.json() == {"quota": None}


async def test_money_shows_a_sale_and_live_users_on_its_charts(shop: Shop) -> None:  # noqa: F811
    before = await shop.client.get(f"/console/projects/{shop.project_id}/money", headers=shop.auth)
    assert before.status_code == 200
    assert "Sales per day: <strong>0.00</strong>" in before.text

    await shop.buy("pro")
    assert (await shop.track()).status_code == 200
    await app_of(shop.client).state.meter.flush()

    page = await shop.client.get(f"/console/projects/{shop.project_id}/money", headers=shop.auth)
    assert page.status_code == 200
    assert "Sales per day: <strong>29.00</strong>" in page.text
    assert 'class="bar" ' in page.text
    assert re.search(r'<rect class="bar"[^>]*data-value="2900"', page.text)
    assert re.search(r'<circle class="dot"[^>]*data-value="1"', page.text)
    assert "Live users per day: <strong>1</strong>" in page.text
    assert "checkout.session.completed" in page.text

    series = await shop.client.get(
        f"/console/api/v1/projects/{shop.project_id}/money/series", headers=shop.auth
    )
    body = series.json()
    assert [s["cents"] for s in body["sales"]] == [2900]
    assert [u["users"] for u in body["live_users"]] == [1]
    platform = await shop.client.get("/console/money?mode=test", headers=shop.auth)
    assert "Sales per day: <strong>29.00</strong>" in platform.text
    live = await shop.client.get("/console/api/v1/money/series?mode=live", headers=shop.auth)
    assert live.json()["sales"] == []


async def _cli(*args: str, code: int = 0) -> Result:
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
    assert result.exit_code == code, result.output
    return result


async def test_an_operator_account_made_by_the_cli_opens_the_operator_pages(
    make_client: ClientFactory,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOLLHOUSE_SECRET_PEPPER", PEPPER)
    load_settings(_env_file=None)
    # No admin key on this server: the operator account is the only way in.
    client = await make_client(tollhouse_env="development", admin_api_key=None)
    await sign_up(client, "builder@example.com")
    away = await client.get("/console/operator")
    assert away.status_code == 303
    assert away.headers["location"] == "/console/operator/signin"
    offered = await client.get("/console/operator/signin")
    assert "Sign in with an operator account" in offered.text
    assert "Admin key" not in offered.text
    shown = await client.get("/console/signin")
    refused = await client.post(
        "/console/operator/signin", data={"csrf_token": csrf_of(shown), "admin_key": ADMIN_KEY}
    )
    assert refused.status_code == 404

    missing = await _cli("operators", "add", "ops@example.com", code=2)
    assert "pass --password" in missing.output
    added = await _cli("operators", "add", "ops@example.com", "--password", PASSWORD, "--json")
    assert json.loads(added.stdout)[0]["created"] is True
    listed = await _cli("operators", "list", "--json")
    assert [o["email"] for o in json.loads(listed.stdout)] == ["ops@example.com"]

    operator = httpx.AsyncClient(transport=client._transport, base_url=client.base_url)
    signed = await post(
        operator,
        "/console/signin?next=%2Fconsole%2Foperator",
        email="ops@example.com",
        password=PASSWORD,
    )
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/console/operator"
    page = await operator.get("/console/operator")
    assert page.status_code == 200
    assert "builder@example.com" in page.text
    assert "Every balance matches its log" in page.text
    assert 'href="/console/operator">Operator</a>' in page.text
    # A developer who is not an operator is sent to the operator sign-in.
    assert (await client.get("/console/operator")).status_code == 303

    await _cli("operators", "remove", "ops@example.com")
    assert (await operator.get("/console/operator")).status_code == 303


async def test_long_lists_page_and_every_form_shows_progress(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    project_id, _ = await new_project(client)
    for n in range(21):
        made = await client.post(
            f"/console/api/v1/projects/{project_id}/tiers", json={"name": f"tier-{n:02d}"}
        )
        assert made.status_code == 201, made.text
    tiers = f"/console/projects/{project_id}/tiers"
    first = await client.get(tiers)
    assert "1–20 of 21" in first.text
    assert "tier-20" not in first.text
    second = await client.get(tiers, params={"offset": "20"})
    assert "21–21 of 21" in second.text
    assert "tier-20" in second.text

    # Progress: one static script on every page, no inline code; long actions say what runs.
    assert '<script src="/static/busy.js?v=' in first.text
    assert "<script>" not in first.text
    assert 'data-busy="Creating and syncing with Stripe…"' in first.text
    script = await client.get("/static/busy.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "aria-busy" in script.text
    money = await client.get("/console/money")
    assert "data-busy" in money.text or "not configured" in money.text
    promote = await client.get(f"/console/projects/{project_id}/promote")
    assert 'data-busy="Promoting: copying tiers and syncing Stripe…"' in promote.text
