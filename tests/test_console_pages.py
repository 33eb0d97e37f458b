"""The console's pages through HTTP: sign-up to a first project whose secret is shown once,
keys rolled and revoked, tokens, password reset by mail, and every refusal (no CSRF token,
another developer's ids, not signed in)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from hosted_support import csrf_of, last_mail_link
from platform_fixtures import database
from stripe_peer import StripePeer
from support import ADMIN_KEY, ClientFactory
from test_billing_stripe import stripe_settings
from tollhouse.billing import inbox
from tollhouse.identity.models import User
from tollhouse.tenancy.models import ApiKey, AuditEntry, Project
from tollhouse.upstreams.models import UpstreamRoute

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_SECRET = re.compile(r"sk_test_[A-Za-z0-9_-]+")
_PROJECT = re.compile(r"/console/projects/(prj_[A-Za-z0-9]+)")


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    # Development: cookies without `Secure`, so the plain-http test client sends them back.
    return await make_client(tollhouse_env="development")


async def post(
    client: httpx.AsyncClient, page: str, action: str | None = None, **fields: str
) -> httpx.Response:
    """GET `page`, then POST its CSRF token and `fields` to `action` (default: the page)."""
    shown = await client.get(page)
    assert shown.status_code == 200, shown.text
    return await client.post(action or page, data={"csrf_token": csrf_of(shown), **fields})


async def sign_up(client: httpx.AsyncClient, email: str = "dev@example.com") -> None:
    done = await post(client, "/console/signup", email=email, password=PASSWORD)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console"


async def new_project(client: httpx.AsyncClient, name: str = "weather-api") -> tuple[str, str]:
    """A project made on the console's home page: its id and the secret shown once."""
    created = await post(client, "/console", "/console/projects", name=name, type="saas")
    assert created.status_code == 201, created.text
    found = _PROJECT.search(created.text)
    secret = _SECRET.search(created.text)
    assert found
    assert secret
    return found.group(1), secret.group(0)


async def meter_calls(
    client: httpx.AsyncClient, project_id: str, secret: str, customer: str, calls: int
) -> None:
    """`calls` metered calls by the customer's browser (the project's publishable key, an
    end-user token minted by its backend)."""
    backend = {"Authorization": f"Bearer {secret}"}
    token = (await client.post(f"/api/customers/{customer}/token", headers=backend)).json()["token"]
    pk = re.search(
        r"pk_test_[A-Za-z0-9_-]+", (await client.get(f"/console/projects/{project_id}")).text
    )
    assert pk is not None
    for _ in range(calls):
        used = await client.post(
            "/api/data", headers={"X-Publishable-Key": pk.group(0), "X-Clerk-Token": token}
        )
        assert used.status_code == 200, used.text


async def test_sign_up_create_a_project_and_its_secret_is_shown_once(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client)
    session_cookie = next(c for c in client.cookies.jar if c.name == "tollhouse_session")
    assert session_cookie.has_nonstandard_attr("HttpOnly")
    home = await client.get("/console")
    assert home.status_code == 200
    assert "Get started in three steps" in home.text
    assert "'unsafe-inline'" not in home.headers["content-security-policy"]

    project_id, secret = await new_project(client)
    # The secret works against the Platform API, as the page's curl says.
    customer = await client.post(
        "/api/customers",
        headers={"Authorization": f"Bearer {secret}"},
        json={"email": "first@example.com"},
    )
    assert customer.status_code == 201, customer.text

    page = await client.get(f"/console/projects/{project_id}")
    assert page.status_code == 200
    assert secret not in page.text
    assert secret[-4:] in page.text  # the display, prefix…last4
    async with database(client).session() as session:
        project = await session.get_one(Project, project_id)
        assert (project.name, project.mode, project.type) == ("weather-api", "test", "saas")
        stored = await session.scalars(
            select(ApiKey.key_hash).where(ApiKey.project_id == project_id)
        )
        assert secret not in list(stored)
    audit = await client.get("/console/audit")
    assert "project.create" in audit.text
    assert "developer.signup" in audit.text
    assert secret not in audit.text


async def test_forms_without_csrf_and_pages_without_a_session_are_refused(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client)
    refused = await client.post("/console/projects", data={"name": "x", "type": "saas"})
    assert refused.status_code == 403
    async with database(client).session() as session:
        assert await session.scalar(select(Project.id).where(Project.name == "x")) is None
    shown = await client.get("/console")
    forged = await client.post(
        "/console/projects", data={"csrf_token": "0" * 64, "name": "x", "type": "saas"}
    )
    assert forged.status_code == 403
    assert "csrf_token" in shown.text

    client.cookies.delete("tollhouse_session")
    away = await client.get("/console/audit")
    assert away.status_code == 303
    assert away.headers["location"] == "/console/signin?next=%2Fconsole%2Faudit"


async def test_another_developers_projects_and_keys_are_not_found(
    make_client: ClientFactory,
) -> None:
    owner = await make_client(tollhouse_env="development")
    await sign_up(owner, "owner@example.com")
    project_id, _ = await new_project(owner)
    async with database(owner).session() as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.project_id == project_id))
    assert key_id is not None

    intruder = httpx.AsyncClient(transport=owner._transport, base_url=owner.base_url)
    await sign_up(intruder, "intruder@example.com")
    assert (await intruder.get(f"/console/projects/{project_id}")).status_code == 404
    own_id, _ = await new_project(intruder, "mine")
    page = f"/console/projects/{own_id}"
    # Another project's key through one's own project: 404, and the key stays active.
    revoked = await post(intruder, page, f"{page}/keys/{key_id}/revoke")
    assert revoked.status_code == 404
    promoted = await post(intruder, page, f"/console/projects/{project_id}/promote")
    assert promoted.status_code == 404
    async with database(owner).session() as session:
        key = await session.get_one(ApiKey, key_id)
        assert key.revoked_at is None
    await intruder.aclose()


async def test_roll_and_revoke_a_key_and_add_an_origin(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    project_id, secret = await new_project(client)
    page = f"/console/projects/{project_id}"
    async with database(client).session() as session:
        old_id = await session.scalar(
            select(ApiKey.id).where(ApiKey.project_id == project_id, ApiKey.kind == "secret")
        )
    rolled = await post(client, page, f"{page}/keys/{old_id}/roll", grace_hours="0")
    assert rolled.status_code == 201, rolled.text
    assert "stopped working now" in rolled.text
    new_secret = _SECRET.search(rolled.text)
    assert new_secret
    assert new_secret.group(0) != secret
    old = await client.get("/api/tiers", headers={"Authorization": f"Bearer {secret}"})
    assert old.status_code == 401
    assert new_secret.group(0) not in (await client.get(page)).text

    async with database(client).session() as session:
        new_id = await session.scalar(select(ApiKey.id).where(ApiKey.rolled_from_id == old_id))
    revoked = await post(client, page, f"{page}/keys/{new_id}/revoke")
    assert revoked.status_code == 200
    assert "revoked" in revoked.text
    gone = await client.get(
        "/api/tiers", headers={"Authorization": f"Bearer {new_secret.group(0)}"}
    )
    assert gone.status_code == 401

    bad = await post(client, page, f"{page}/origins", origin="not a url")
    assert bad.status_code == 400
    added = await post(client, page, f"{page}/origins", origin="https://app.example")
    assert added.status_code == 200
    assert "https://app.example" in added.text
    async with database(client).session() as session:
        actions = list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-3:] == ["key.roll", "key.revoke", "origin.allow"]


async def test_personal_token_shown_once_and_password_reset_by_mail(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client)
    created = await post(client, "/console/tokens", name="laptop", expires_in_days="30")
    assert created.status_code == 201
    token = re.search(r"dev_[A-Za-z0-9_-]+", created.text)
    assert token
    me = await client.get(
        "/console/api/v1/me", headers={"Authorization": f"Bearer {token.group(0)}"}
    )
    assert me.status_code == 200
    assert token.group(0) not in (await client.get("/console/tokens")).text

    signed_out = await post(client, "/console", "/console/signout")
    assert signed_out.status_code == 303
    assert (await client.get("/console")).status_code == 303

    sent = await post(client, "/console/forgot", email="dev@example.com")
    assert sent.status_code == 200
    assert "a reset link is on its way" in sent.text
    link = await last_mail_link(client, "dev@example.com")
    path = link.removeprefix("http://tollhouse.test")
    reset = await post(
        client,
        path,
        "/console/reset",
        token=path.split("token=")[1],
        password="a brand new passphrase",
    )
    assert reset.status_code == 303
    assert (await client.get("/console")).status_code == 200
    # The link is spent: the password it was bound to has changed.
    again = await post(
        client,
        path,
        "/console/reset",
        token=path.split("token=")[1],
        password="yet another passphrase",
    )
    assert again.status_code == 400
    client.cookies.clear()
    old = await post(client, "/console/signin", email="dev@example.com", password=PASSWORD)
    assert old.status_code == 401
    new = await post(
        client, "/console/signin", email="dev@example.com", password="a brand new passphrase"
    )
    assert new.status_code == 303


async def test_the_session_cookie_is_secure_outside_development(
    make_client: ClientFactory,
) -> None:
    client = await make_client()
    shown = await client.get("/console/signup")
    # A Secure cookie is not sent back over plain http: the test hands it over itself.
    client.cookies.set("tollhouse_csrf", shown.cookies["tollhouse_csrf"])
    done = await client.post(
        "/console/signup",
        data={"csrf_token": csrf_of(shown), "email": "dev@example.com", "password": PASSWORD},
    )
    assert done.status_code == 303, done.text
    cookie = next(v for v in done.headers.get_list("set-cookie") if "tollhouse_session" in v)
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "samesite=lax" in cookie.lower()


async def test_tiers_are_created_and_edited_type_locked(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    project_id, _ = await new_project(client)
    tiers = f"/console/projects/{project_id}/tiers"
    created = await post(
        client, tiers, name="Pro", price_cents="2900", limit="1000", features="Fast\n\nSupport"
    )
    assert created.status_code == 303, created.text
    locked = await post(client, tiers, name="Mug", billing_mode="one_off")
    assert locked.status_code == 400
    assert "type" in locked.text
    bad = await post(client, tiers, name="Cheap", price_cents="-1")
    assert bad.status_code == 422
    assert "Price cents" in bad.text

    edited = await post(client, f"{tiers}/pro", limit="unlimited", display_name="Pro plan")
    assert edited.status_code == 200, edited.text
    assert "Saved." in edited.text
    listed = await client.get(f"{tiers}")
    assert "Pro plan" in listed.text
    api = await client.get(f"/console/api/v1/projects/{project_id}/tiers/pro")
    tier = api.json()
    assert (tier["price_cents"], tier["limit"], tier["features"]) == (
        2900,
        "unlimited",
        ["Fast", "Support"],
    )
    assert (await client.get(f"{tiers}/nope")).status_code == 404


async def test_customers_search_usage_chart_plan_change_and_delete(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client)
    project_id, secret = await new_project(client)
    tiers = f"/console/projects/{project_id}/tiers"
    for name, limit in (("free", "10"), ("pro", "100")):
        assert (await post(client, tiers, name=name, limit=limit)).status_code == 303
    backend = {"Authorization": f"Bearer {secret}"}
    made = await client.post("/api/customers", headers=backend, json={"email": "grace@example.com"})
    customer = made.json()["customer"]["id"]
    await meter_calls(client, project_id, secret, customer, 2)
    # No flush: the chart adds the meter's counts not yet written (METERING_FLUSH_SECONDS).

    listing = f"/console/projects/{project_id}/customers"
    page = await client.get(listing, params={"q": "GRACE"})
    assert page.status_code == 200
    assert "grace@example.com" in page.text
    assert 'data-value="2"' in page.text  # today's bar
    assert "<strong>2</strong> units" in page.text
    assert "grace@example.com" not in (await client.get(listing, params={"q": "nobody"})).text

    async with database(client).session() as session:
        user_id = await session.scalar(select(User.id).where(User.external_id == customer))
    detail = f"{listing}/{user_id}"
    assert 'data-value="2"' in (await client.get(detail)).text  # the customer's own chart
    changed = await post(client, detail, f"{detail}/plan", plan="pro")
    assert changed.status_code == 200
    assert "Plan changed to pro" in changed.text
    unknown = await post(client, detail, f"{detail}/plan", plan="gold")
    assert unknown.status_code == 422
    other_id, _ = await new_project(client, "other")
    assert (
        await client.get(f"/console/projects/{other_id}/customers/{user_id}")
    ).status_code == 404

    deleted = await post(client, detail, f"{detail}/delete")
    assert deleted.status_code == 303
    async with database(client).session() as session:
        user = await session.get_one(User, user_id)
        assert (user.plan, user.is_active, user.email) == ("pro", False, None)


async def test_api_docs_are_served_offline_under_a_self_only_policy(
    client: httpx.AsyncClient,
) -> None:
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        page = await client.get(path)
        assert page.status_code == 200
        assert "https://" not in page.text  # nothing from a CDN
        policy = page.headers["content-security-policy"]
        assert "script-src 'self';" in policy
        assert "unsafe" not in policy
        for src in re.findall(r'src="([^"]+)"', page.text):
            served = await client.get(src)
            assert served.status_code == 200, src
            assert "javascript" in served.headers["content-type"]
        assert f"/docs-assets/{asset}" in page.text


async def test_stripe_connect_round_trip_lands_on_the_money_page(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> None:
    client = await make_client(tollhouse_env="development", **stripe_settings(stripe_peer))
    await sign_up(client)
    money = await client.get("/console/money")
    assert money.status_code == 200
    assert 'href="/console/api/v1/stripe/connect?mode=test"' in money.text
    start = await client.get("/console/api/v1/stripe/connect", params={"mode": "test"})
    assert start.status_code == 302
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    code, account = stripe_peer.issue_code()
    done = await client.get(
        "/console/api/v1/stripe/callback", params={"code": code, "state": state}
    )
    assert done.status_code == 302
    landed = await client.get(done.headers["location"])
    assert landed.status_code == 200
    assert "Stripe is connected." in landed.text
    assert account in landed.text

    project_id, _ = await new_project(client)
    figures = await client.get(f"/console/projects/{project_id}/money")
    assert figures.status_code == 200
    assert "No subscriptions yet." in figures.text

    off = await post(client, "/console/money", "/console/money/disconnect", mode="test")
    assert off.status_code == 200
    assert "Stripe test disconnected." in off.text
    assert account not in off.text


async def test_upstreams_are_registered_guarded_and_removed(make_client: ClientFactory) -> None:
    client = await make_client(tollhouse_env="development", allow_private_upstreams=False)
    await sign_up(client)
    project_id, _ = await new_project(client)
    page = f"/console/projects/{project_id}/upstreams"
    private = await post(
        client, page, path_prefix="weather", upstream_url="http://127.0.0.1:9/", units="2"
    )
    assert private.status_code == 400, private.text
    async with database(client).session() as session:
        assert await session.scalar(select(func.count()).select_from(UpstreamRoute)) == 0

    shown = await client.get(page)
    fields = [
        ("csrf_token", csrf_of(shown)),
        ("path_prefix", "weather"),
        ("upstream_url", "https://93.184.215.14/v1"),
        ("methods", "GET"),
        ("methods", "POST"),
        ("units", "2"),
    ]
    made = await client.post(page, content=urlencode(fields), headers=FORM)
    assert made.status_code == 201, made.text
    async with database(client).session() as session:
        route = await session.scalar(select(UpstreamRoute))
        assert route is not None
        assert (route.path_prefix, route.methods, route.units) == ("weather", "GET,POST", 2)
    removed = await post(client, page, f"{page}/{route.id}/delete")
    assert removed.status_code == 200
    assert "Upstream removed." in removed.text


async def test_the_platform_plan_page_says_what_is_offered(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    plan = await client.get("/console/plan")
    assert plan.status_code == 200
    assert "nothing to pay" in plan.text
    refused = await post(client, "/console/plan", "/console/plan/checkout")
    assert refused.status_code == 409


async def test_operator_pages_behind_the_admin_key(client: httpx.AsyncClient) -> None:
    await sign_up(client, "builder@example.com")
    away = await client.get("/console/operator")
    assert away.status_code == 303
    assert away.headers["location"] == "/console/operator/signin"
    wrong = await post(client, "/console/operator/signin", admin_key="not the key")
    assert wrong.status_code == 403
    right = await post(client, "/console/operator/signin", admin_key=ADMIN_KEY)
    assert right.status_code == 303
    cookie = next(v for v in right.headers.get_list("set-cookie") if "tollhouse_operator" in v)
    assert "HttpOnly" in cookie
    page = await client.get("/console/operator")
    assert page.status_code == 200
    assert "builder@example.com" in page.text
    assert "Every balance matches its log" in page.text
    assert ADMIN_KEY not in page.text


async def test_events_list_the_projects_webhook_deliveries(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    project_id, _ = await new_project(client)
    other_id, _ = await new_project(client, "other")
    async with database(client).session() as session:
        for n, project in enumerate((project_id, other_id)):
            await inbox.first_delivery(
                session,
                "stripe",
                f"evt_{n}",
                "invoice.paid",
                project_id=project,
                summary={"amount": 2900},
            )
    page = await client.get(f"/console/projects/{project_id}/events")
    assert page.status_code == 200
    assert "evt_0" in page.text
    assert "amount 2900" in page.text
    assert "evt_1" not in page.text
