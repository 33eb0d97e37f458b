"""The Developer API (/console/api/v1) through HTTP, and its CLI mirror."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from typer.testing import CliRunner

from support import (
    PEPPER,
    ClientFactory,
    PinnedClock,
    app_of,
    assert_error,
    pin_rate_limit_clock,
)
from tollhouse.catalog.models import Tier
from tollhouse.cli import app as cli
from tollhouse.config import load_settings
from tollhouse.identity.models import User
from tollhouse.kit.clock import utcnow
from tollhouse.metering.models import UsageDaily
from tollhouse.tenancy.models import AuditEntry, DeveloperToken, Project

pytestmark = pytest.mark.anyio

API = "/console/api/v1"
PASSWORD = "correct horse battery"
Headers = dict[str, str]


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client()


async def signup(client: httpx.AsyncClient, email: str = "dev@example.com") -> Headers:
    """A new developer; returns headers carrying their session (the client keeps no cookie)."""
    response = await client.post(f"{API}/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    client.cookies.clear()
    return {"Cookie": f"tollhouse_session={response.json()['token']}"}


async def create_project(
    client: httpx.AsyncClient, auth: Headers, name: str = "Acme", **fields: Any
) -> dict[str, Any]:
    body = {"name": name, "type": "saas", **fields}
    response = await client.post(f"{API}/projects", json=body, headers=auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def create_tier(
    client: httpx.AsyncClient, auth: Headers, project_id: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(f"{API}/projects/{project_id}/tiers", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    tier: dict[str, Any] = response.json()
    return tier


async def add_end_user(client: httpx.AsyncClient, project_id: str, external_id: str) -> str:
    async with app_of(client).state.database.session() as session:
        user = User(project_id=project_id, external_id=external_id, plan="free")
        session.add(user)
        await session.flush()
        return str(user.id)


async def count(client: httpx.AsyncClient, model: Any) -> int:
    async with app_of(client).state.database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def near(iso: str, expected: datetime, seconds: float = 30) -> bool:
    return abs((datetime.fromisoformat(iso) - expected).total_seconds()) < seconds


# --- accounts --------------------------------------------------------------------------------


async def test_signup_login_logout_and_me(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{API}/auth/signup", json={"email": " Dev@Example.COM ", "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["developer"]["email"] == "dev@example.com"
    assert body["developer"]["platform_id"].startswith("plt_")
    cookie = response.headers["set-cookie"].lower()
    assert "tollhouse_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http here; https sets Secure

    me = await client.get(f"{API}/me")  # the cookie from sign-up
    assert me.status_code == 200, me.text
    assert me.json()["developer"] == body["developer"]
    assert me.json()["platform"]["id"] == body["developer"]["platform_id"]

    duplicate = await client.post(
        f"{API}/auth/signup", json={"email": "DEV@example.com", "password": PASSWORD}
    )
    assert_error(duplicate, 409, "email_taken")

    client.cookies.clear()
    assert_error(await client.get(f"{API}/me"), 401, "authentication_required")
    wrong = await client.post(
        f"{API}/auth/login", json={"email": "dev@example.com", "password": "wrong password!"}
    )
    unknown = await client.post(
        f"{API}/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert wrong.json()["message"] == unknown.json()["message"]

    login = await client.post(
        f"{API}/auth/login", json={"email": "DEV@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    session_cookie = {"Cookie": f"tollhouse_session={login.json()['token']}"}
    client.cookies.clear()
    assert (await client.get(f"{API}/me", headers=session_cookie)).status_code == 200
    logout = await client.post(f"{API}/auth/logout", headers=session_cookie)
    assert logout.status_code == 204, logout.text
    assert_error(await client.get(f"{API}/me", headers=session_cookie), 401, "invalid_token")


async def test_bad_signups_write_nothing(client: httpx.AsyncClient) -> None:
    for body in (
        {"email": "a@example.com", "password": "short"},
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@example.com"},
        {"email": "a@example.com", "password": PASSWORD, "admin": True},
        {"email": "a@example.com", "password": 1234567890123},
        {"email": "a" * 10_000 + "@example.com", "password": PASSWORD},
    ):
        assert_error(await client.post(f"{API}/auth/signup", json=body), 422, "validation_error")
    malformed = await client.post(
        f"{API}/auth/signup", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert_error(malformed, 400, "malformed_json")
    assert await count(client, AuditEntry) == 0


async def test_personal_access_tokens(client: httpx.AsyncClient) -> None:
    auth = await signup(client)
    created = await client.post(
        f"{API}/tokens", json={"name": "ci", "expires_in_days": 30}, headers=auth
    )
    assert created.status_code == 201, created.text
    plaintext = created.json()["plaintext"]
    token = created.json()["token"]
    assert plaintext.startswith("dev_")
    assert token["display"] == f"{plaintext[:8]}…{plaintext[-4:]}"
    assert near(token["expires_at"], utcnow() + timedelta(days=30), 60)

    listed = await client.get(f"{API}/tokens", headers=auth)
    assert [t["id"] for t in listed.json()] == [token["id"]]
    assert plaintext not in listed.text

    bearer = {"Authorization": f"Bearer {plaintext}"}
    me = await client.get(f"{API}/me", headers=bearer)
    assert me.status_code == 200, me.text
    assert me.json()["developer"]["email"] == "dev@example.com"

    other = await signup(client, "other@example.com")
    assert_error(
        await client.delete(f"{API}/tokens/{token['id']}", headers=other), 404, "token_not_found"
    )
    revoked = await client.delete(f"{API}/tokens/{token['id']}", headers=bearer)
    assert revoked.status_code == 204
    assert_error(await client.get(f"{API}/me", headers=bearer), 401, "invalid_token")
    assert (await client.get(f"{API}/tokens", headers=auth)).json()[0]["revoked_at"] is not None
    async with app_of(client).state.database.session() as session:
        hashes = list(await session.scalars(select(DeveloperToken.token_hash)))
    assert plaintext not in hashes


# --- projects and keys -----------------------------------------------------------------------


async def test_keys_show_when_they_were_last_used_written_in_one_batch(
    make_client: ClientFactory,
) -> None:
    # The periodic flush is pushed out of the way: the test flushes when it means to.
    client = await make_client(key_usage_flush_seconds=3600)
    app = app_of(client)
    usage = app.state.identity.key_usage
    used_at = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    usage.clock = lambda: used_at
    auth = await signup(client)
    created = await create_project(client, auth)
    project_id = created["project"]["id"]
    pk = {"X-Publishable-Key": created["publishable_key"]}
    sk = {"Authorization": f"Bearer {created['secret_key']}"}
    for _ in range(3):  # cached after the first: each use is still noted
        assert (await client.get("/api/tiers", headers=pk)).status_code == 200
    assert (await client.get("/api/dashboard", headers=sk)).status_code == 200
    assert usage.pending == 2  # noted in memory: nothing written on the request path
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append(statement)

    engine = app.state.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert await usage.flush(app.state.database) == 2
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert usage.pending == 0
    keys = (await client.get(f"{API}/projects/{project_id}/keys", headers=auth)).json()["keys"]
    last_used = {k["kind"]: datetime.fromisoformat(k["last_used_at"]) for k in keys}
    assert last_used == {"publishable": used_at, "secret": used_at}
    assert await usage.flush(app.state.database) == 0  # nothing new: no statement at all

    later = used_at + timedelta(minutes=5)
    usage.clock = lambda: later
    assert (await client.get("/api/tiers", headers=pk)).status_code == 200
    assert await usage.flush(app.state.database) == 1
    keys = (await client.get(f"{API}/projects/{project_id}/keys", headers=auth)).json()["keys"]
    last_used = {k["kind"]: datetime.fromisoformat(k["last_used_at"]) for k in keys}
    assert last_used == {"publishable": later, "secret": used_at}


async def test_project_keys_are_shown_once_and_the_secret_authenticates(
    client: httpx.AsyncClient,
) -> None:
    auth = await signup(client)
    created = await create_project(client, auth, enable_tax=True)
    project = created["project"]
    assert (project["mode"], project["type"], project["enable_tax"]) == ("test", "saas", True)
    secret = created["secret_key"]
    assert secret.startswith("sk_test_")
    assert created["publishable_key"].startswith("pk_test_")

    for path in ("/projects", f"/projects/{project['id']}", f"/projects/{project['id']}/keys"):
        response = await client.get(f"{API}{path}", headers=auth)
        assert response.status_code == 200, response.text
        assert secret not in response.text
    keys = (await client.get(f"{API}/projects/{project['id']}/keys", headers=auth)).json()["keys"]
    assert sorted(k["kind"] for k in keys) == ["publishable", "secret"]
    assert {k["status"] for k in keys} == {"active"}

    status = await client.get("/api/v1/status", headers={"Authorization": f"Bearer {secret}"})
    assert status.status_code == 200, status.text
    assert status.json()["caller"]["kind"] == "secret_key"

    taken = await client.post(
        f"{API}/projects", json={"name": "Acme", "type": "saas"}, headers=auth
    )
    assert_error(taken, 409, "project_name_taken")
    live = await create_project(client, auth, mode="live")
    assert live["secret_key"].startswith("sk_live_")


async def test_bad_project_input_writes_nothing(client: httpx.AsyncClient) -> None:
    auth = await signup(client)
    for body in (
        {"name": "x" * 10_240, "type": "saas"},
        {"name": "", "type": "saas"},
        {"name": "A", "type": "shop"},
        {"name": "A", "type": "saas", "mode": "prod"},
        {"name": 5, "type": "saas"},
        {"name": "A", "type": "saas", "enable_tax": "yes"},
        {"name": "A", "type": "saas", "owner": "someone"},
        {"type": "saas"},
    ):
        response = await client.post(f"{API}/projects", json=body, headers=auth)
        assert_error(response, 422, "validation_error")
    assert await count(client, Project) == 1  # only the home project
    assert_error(
        await client.post(f"{API}/projects", json={"name": "A", "type": "saas"}),
        401,
        "authentication_required",
    )


async def test_project_settings_and_the_jwks_url_check(client: httpx.AsyncClient) -> None:
    auth = await signup(client)
    project_id = (await create_project(client, auth))["project"]["id"]
    url = f"{API}/projects/{project_id}"

    changed = await client.patch(
        url, json={"name": "Acme 2", "rate_limit_per_minute": 500}, headers=auth
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["rate_limit_per_minute"]) == ("Acme 2", 500)
    for bad in ({"rate_limit_per_minute": 0}, {"rate_limit_per_minute": 100_001}, {"mode": "live"}):
        assert_error(await client.patch(url, json=bad, headers=auth), 422, "validation_error")

    issuer = {"end_user_issuer": "https://issuer.example", "end_user_audience": "acme"}
    for jwks, code in (
        ("http://93.184.216.34/jwks.json", "url_not_allowed"),
        ("https://127.0.0.1/jwks.json", "url_not_allowed"),
        ("https://169.254.169.254/latest", "url_not_allowed"),
        ("https://[::1]/jwks.json", "url_not_allowed"),
    ):
        response = await client.patch(url, json={**issuer, "end_user_jwks_url": jwks}, headers=auth)
        assert_error(response, 400, code)
    incomplete = await client.patch(url, json=issuer, headers=auth)
    assert_error(incomplete, 400, "issuer_incomplete")
    accepted = await client.patch(
        url, json={**issuer, "end_user_jwks_url": "https://93.184.216.34/jwks.json"}, headers=auth
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["end_user_jwks_url"] == "https://93.184.216.34/jwks.json"
    cleared = await client.patch(
        url,
        json={"end_user_issuer": None, "end_user_jwks_url": None, "end_user_audience": None},
        headers=auth,
    )
    assert cleared.json()["end_user_issuer"] is None

    deleted = await client.delete(url, headers=auth)
    assert deleted.status_code == 204
    assert_error(await client.get(url, headers=auth), 404, "project_not_found")


async def test_roll_with_grace_and_revoke(client: httpx.AsyncClient) -> None:
    auth = await signup(client)
    created = await create_project(client, auth)
    project_id = created["project"]["id"]
    keys_url = f"{API}/projects/{project_id}/keys"
    [secret] = [
        k
        for k in (await client.get(keys_url, headers=auth)).json()["keys"]
        if k["kind"] == "secret"
    ]

    rolled = await client.post(
        f"{keys_url}/{secret['id']}/roll", json={"grace_hours": 2}, headers=auth
    )
    assert rolled.status_code == 201, rolled.text
    body = rolled.json()
    new_secret = body["plaintext"]
    assert new_secret.startswith("sk_test_")
    assert new_secret != created["secret_key"]
    assert body["previous"]["status"] == "expiring"
    assert near(body["previous"]["expires_at"], utcnow() + timedelta(hours=2))
    listed = {k["id"]: k for k in (await client.get(keys_url, headers=auth)).json()["keys"]}
    assert listed[secret["id"]]["status"] == "expiring"
    assert listed[body["key"]["id"]]["status"] == "active"
    assert new_secret not in str(listed)

    for key in (created["secret_key"], new_secret):  # both work during the grace period
        status = await client.get("/api/v1/status", headers={"Authorization": f"Bearer {key}"})
        assert status.status_code == 200, status.text

    revoked = await client.post(f"{keys_url}/{body['key']['id']}/revoke", headers=auth)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    listed = {k["id"]: k for k in (await client.get(keys_url, headers=auth)).json()["keys"]}
    assert listed[body["key"]["id"]]["revoked_at"] is not None

    issued = await client.post(keys_url, json={"kind": "publishable", "name": "web"}, headers=auth)
    assert issued.status_code == 201, issued.text
    assert issued.json()["plaintext"].startswith("pk_test_")
    for bad in ({"grace_hours": 721}, {"grace_hours": -1}, {"grace_hours": "2"}):
        response = await client.post(f"{keys_url}/{secret['id']}/roll", json=bad, headers=auth)
        assert_error(response, 422, "validation_error")
    assert_error(
        await client.post(keys_url, json={"kind": "admin"}, headers=auth), 422, "validation_error"
    )


async def test_another_developers_ids_are_404(client: httpx.AsyncClient) -> None:
    alice = await signup(client, "alice@example.com")
    bob = await signup(client, "bob@example.com")
    a_project = (await create_project(client, alice))["project"]["id"]
    b_project = (await create_project(client, bob))["project"]["id"]
    await create_tier(client, alice, a_project, name="Pro", price_cents=900)
    a_user = await add_end_user(client, a_project, "alice-customer")
    a_keys = (await client.get(f"{API}/projects/{a_project}/keys", headers=alice)).json()["keys"]
    a_key = a_keys[0]["id"]

    a_url = f"{API}/projects/{a_project}"
    for method, path, body in (
        ("GET", "", None),
        ("PATCH", "", {"name": "stolen"}),
        ("DELETE", "", None),
        ("GET", "/keys", None),
        ("POST", "/keys", {"kind": "secret"}),
        ("GET", "/tiers", None),
        ("POST", "/tiers", {"name": "Free"}),
        ("PATCH", "/tiers/pro", {"price_cents": 1}),
        ("DELETE", "/tiers/pro", None),
        ("GET", "/users", None),
        ("GET", f"/users/{a_user}", None),
        ("PATCH", f"/users/{a_user}", {"plan": "pro"}),
        ("GET", "/usage", None),
        ("POST", "/promote", None),
    ):
        response = await client.request(method, f"{a_url}{path}", json=body, headers=bob)
        assert_error(response, 404, "project_not_found")

    # Alice's ids under Bob's own project are just as unknown.
    b_url = f"{API}/projects/{b_project}"
    assert_error(await client.post(f"{b_url}/keys/{a_key}/roll", headers=bob), 404, "key_not_found")
    assert_error(
        await client.post(f"{b_url}/keys/{a_key}/revoke", headers=bob), 404, "key_not_found"
    )
    assert_error(await client.get(f"{b_url}/tiers/pro", headers=bob), 404, "tier_not_found")
    assert_error(await client.get(f"{b_url}/users/{a_user}", headers=bob), 404, "user_not_found")
    assert [
        p["id"] for p in (await client.get(f"{API}/projects", headers=bob)).json()["projects"]
    ] == [b_project]

    # Nothing of Alice's changed.
    keys_after = (await client.get(f"{a_url}/keys", headers=alice)).json()["keys"]
    assert {k["status"] for k in keys_after} == {"active"}
    assert (await client.get(f"{a_url}/tiers/pro", headers=alice)).json()["price_cents"] == 900


# --- catalog ---------------------------------------------------------------------------------


async def test_tiers_are_type_locked_and_validated(client: httpx.AsyncClient) -> None:
    auth = await signup(client)
    saas = (await create_project(client, auth))["project"]["id"]
    store = (await create_project(client, auth, name="Shop", type="store"))["project"]["id"]

    tier = await create_tier(
        client,
        auth,
        saas,
        name="Pro Plan!",
        price_cents=1900,
        limit="unlimited",
        features=["a", "b"],
        trial_days=14,
    )
    assert (tier["slug"], tier["display_name"], tier["billing_mode"]) == (
        "pro-plan",
        "Pro Plan!",
        "subscription",
    )
    assert (tier["limit"], tier["trial_days"], tier["features"]) == ("unlimited", 14, ["a", "b"])
    product = await create_tier(client, auth, store, name="T-Shirt", price_cents=2500, inventory=3)
    assert (product["billing_mode"], product["inventory"], product["sold_out"]) == (
        "one_off",
        3,
        False,
    )

    locked = await client.post(
        f"{API}/projects/{saas}/tiers",
        json={"name": "Mug", "billing_mode": "one_off"},
        headers=auth,
    )
    assert_error(locked, 400, "type_locked")
    locked = await client.post(
        f"{API}/projects/{store}/tiers",
        json={"name": "Club", "billing_mode": "subscription"},
        headers=auth,
    )
    assert_error(locked, 400, "type_locked")
    locked = await client.patch(
        f"{API}/projects/{saas}/tiers/pro-plan", json={"billing_mode": "one_off"}, headers=auth
    )
    assert_error(locked, 400, "type_locked")
    duplicate = await client.post(
        f"{API}/projects/{saas}/tiers", json={"name": "pro plan"}, headers=auth
    )
    assert_error(duplicate, 409, "tier_exists")
    nameless = await client.post(f"{API}/projects/{saas}/tiers", json={"name": "!!!"}, headers=auth)
    assert_error(nameless, 400, "invalid_tier_name")

    for bad in (
        {"name": "A", "price_cents": -1},
        {"name": "A", "price_cents": "100"},
        {"name": "A", "price_cents": 1.5},
        {"name": "A", "limit": -5},
        {"name": "A", "limit": "lots"},
        {"name": "A", "limit": True},
        {"name": "A", "trial_days": 731},
        {"name": "A", "features": "a,b"},
        {"name": "A", "features": [1]},
        {"name": "A" * 10_240},
        {"name": "A", "period": "weekly"},
        {"name": "A", "image_url": "javascript:alert(1)"},
        {"name": "A", "stripe_price_id": "price_x"},
        {"price_cents": 5},
    ):
        response = await client.post(f"{API}/projects/{saas}/tiers", json=bad, headers=auth)
        assert_error(response, 422, "validation_error")
    assert await count(client, Tier) == 2

    patched = await client.patch(
        f"{API}/projects/{saas}/tiers/pro-plan",
        json={"price_cents": 2900, "limit": 1000, "popular": True},
        headers=auth,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["price_cents"], patched.json()["limit"]) == (2900, 1000)
    assert (patched.json()["trial_days"], patched.json()["features"]) == (14, ["a", "b"])
    unlimited = await client.patch(
        f"{API}/projects/{saas}/tiers/pro-plan", json={"limit": None}, headers=auth
    )
    assert unlimited.json()["limit"] == "unlimited"
    listed = (await client.get(f"{API}/projects/{saas}/tiers", headers=auth)).json()["tiers"]
    assert [t["slug"] for t in listed] == ["pro-plan"]

    gone = await client.delete(f"{API}/projects/{store}/tiers/t-shirt", headers=auth)
    assert gone.status_code == 204
    assert_error(
        await client.delete(f"{API}/projects/{store}/tiers/t-shirt", headers=auth),
        404,
        "tier_not_found",
    )


# --- end users and usage ---------------------------------------------------------------------


async def test_end_users_and_their_plans(client: httpx.AsyncClient) -> None:
    auth = await signup(client)
    project_id = (await create_project(client, auth))["project"]["id"]
    await create_tier(client, auth, project_id, name="Free")
    await create_tier(client, auth, project_id, name="Pro", price_cents=900, limit=1000)
    users = [await add_end_user(client, project_id, f"customer-{n}") for n in range(3)]
    url = f"{API}/projects/{project_id}/users"

    page = (await client.get(f"{url}?limit=2", headers=auth)).json()
    assert (page["total"], len(page["users"])) == (3, 2)
    rest = (await client.get(f"{url}?limit=2&offset=2", headers=auth)).json()
    assert {u["id"] for u in page["users"] + rest["users"]} == set(users)
    for bad in ("limit=0", "limit=201", "offset=-1"):
        assert_error(await client.get(f"{url}?{bad}", headers=auth), 422, "validation_error")

    one = await client.get(f"{url}/{users[0]}", headers=auth)
    assert (one.json()["external_id"], one.json()["plan"]) == ("customer-0", "free")
    assert_error(await client.get(f"{url}/{uuid.uuid4()}", headers=auth), 404, "user_not_found")
    assert_error(await client.get(f"{url}/not-a-uuid", headers=auth), 422, "validation_error")

    unknown = await client.patch(f"{url}/{users[0]}", json={"plan": "platinum"}, headers=auth)
    assert_error(unknown, 422, "unknown_plan")
    assert_error(
        await client.patch(f"{url}/{users[0]}", json={"plan": 5}, headers=auth),
        422,
        "validation_error",
    )
    upgraded = await client.patch(f"{url}/{users[0]}", json={"plan": "pro"}, headers=auth)
    assert upgraded.status_code == 200, upgraded.text
    assert upgraded.json()["plan"] == "pro"

    usage = await client.get(f"{API}/projects/{project_id}/usage", headers=auth)
    assert usage.status_code == 200, usage.text
    assert (usage.json()["users"], usage.json()["daily"]) == ([], [])


async def test_the_usage_chart_shows_counts_before_the_meter_flushes(
    make_client: ClientFactory,
) -> None:
    # The periodic flush is pushed out of the way: what the chart shows must not wait for it.
    client = await make_client(metering_flush_seconds=60)
    meter = app_of(client).state.meter
    moment = utcnow()
    meter.clock = lambda: moment  # the day the units are counted on
    auth = await signup(client)
    created = await create_project(client, auth)
    project_id = created["project"]["id"]
    await create_tier(client, auth, project_id, name="Free", limit=100)
    secret = {"Authorization": f"Bearer {created['secret_key']}"}
    made = await client.post("/api/customers", headers=secret, json={"email": "u@example.com"})
    customer = made.json()["customer"]["id"]
    token = (await client.post(f"/api/customers/{customer}/token", headers=secret)).json()
    end_user = {"X-Publishable-Key": created["publishable_key"], "X-Clerk-Token": token["token"]}
    for _ in range(3):
        used = await client.post("/api/data", headers=end_user)
        assert used.status_code == 200, used.text
    today = moment.date().isoformat()

    async def chart() -> list[dict[str, Any]]:
        usage = await client.get(f"{API}/projects/{project_id}/usage", headers=auth)
        assert usage.status_code == 200, usage.text
        daily: list[dict[str, Any]] = usage.json()["daily"]
        return daily

    assert await count(client, UsageDaily) == 0  # nothing flushed yet
    assert await chart() == [{"day": today, "units": 3}]
    assert (await client.get("/api/usage", headers=end_user)).json()["usageCount"] == 3
    await meter.flush()
    assert await count(client, UsageDaily) == 1
    assert await chart() == [{"day": today, "units": 3}]  # the flushed units, not twice
    await client.post("/api/data", headers=end_user)
    assert await chart() == [{"day": today, "units": 4}]


# --- promote ---------------------------------------------------------------------------------


async def test_promote_copies_the_catalog_and_keeps_the_test_project(
    client: httpx.AsyncClient,
) -> None:
    auth = await signup(client)
    created = await create_project(client, auth, type="membership", enable_tax=True)
    test_id = created["project"]["id"]
    await client.patch(
        f"{API}/projects/{test_id}", json={"rate_limit_per_minute": 42}, headers=auth
    )
    await create_tier(client, auth, test_id, name="Basic", price_cents=500, trial_days=7)
    await create_tier(
        client, auth, test_id, name="Gold", price_cents=1500, features=["x"], popular=True
    )

    promoted = await client.post(f"{API}/projects/{test_id}/promote", headers=auth)
    assert promoted.status_code == 201, promoted.text
    body = promoted.json()
    live = body["project"]
    assert body["tiers_copied"] == 2
    assert body["secret_key"].startswith("sk_live_")
    assert body["publishable_key"].startswith("pk_live_")
    assert (live["name"], live["mode"], live["type"]) == ("Acme", "live", "membership")
    assert (live["enable_tax"], live["rate_limit_per_minute"]) == (True, 42)
    assert live["promoted_from_id"] == test_id

    def shape(tiers: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (t["slug"], t["price_cents"], t["trial_days"], t["features"], t["popular"])
            for t in tiers
        ]

    test_tiers = (await client.get(f"{API}/projects/{test_id}/tiers", headers=auth)).json()
    live_tiers = (await client.get(f"{API}/projects/{live['id']}/tiers", headers=auth)).json()
    assert shape(live_tiers["tiers"]) == shape(test_tiers["tiers"])
    assert shape(live_tiers["tiers"])[0] == ("basic", 500, 7, [], False)

    # The test project and its keys are untouched.
    test_keys = (await client.get(f"{API}/projects/{test_id}/keys", headers=auth)).json()["keys"]
    assert {k["status"] for k in test_keys} == {"active"}
    status = await client.get(
        "/api/v1/status", headers={"Authorization": f"Bearer {created['secret_key']}"}
    )
    assert status.status_code == 200, status.text

    again = await client.post(f"{API}/projects/{test_id}/promote", headers=auth)
    assert_error(again, 409, "project_name_taken")
    not_test = await client.post(f"{API}/projects/{live['id']}/promote", headers=auth)
    assert_error(not_test, 400, "not_a_test_project")


# --- audit -----------------------------------------------------------------------------------


async def test_audit_lists_actions_newest_first_without_secrets(client: httpx.AsyncClient) -> None:
    auth = await signup(client)
    await signup(client, "someone-else@example.com")
    created = await create_project(client, auth)
    project_id = created["project"]["id"]
    await create_tier(client, auth, project_id, name="Pro")
    token = (await client.post(f"{API}/tokens", json={"name": "ci"}, headers=auth)).json()
    keys = (await client.get(f"{API}/projects/{project_id}/keys", headers=auth)).json()["keys"]
    secret_id = next(k["id"] for k in keys if k["kind"] == "secret")
    rolled = await client.post(f"{API}/projects/{project_id}/keys/{secret_id}/roll", headers=auth)
    promoted = await client.post(f"{API}/projects/{project_id}/promote", headers=auth)

    audit = await client.get(f"{API}/audit", headers=auth)
    assert audit.status_code == 200, audit.text
    entries = audit.json()["entries"]
    assert [e["action"] for e in entries] == [
        "project.promote",
        "key.roll",
        "token.create",
        "tier.create",
        "project.create",
        "developer.signup",
    ]
    for secret in (
        created["secret_key"],
        token["plaintext"],
        rolled.json()["plaintext"],
        promoted.json()["secret_key"],
    ):
        assert secret not in audit.text
    page = (await client.get(f"{API}/audit?limit=2&offset=1", headers=auth)).json()
    assert [e["action"] for e in page["entries"]] == ["key.roll", "token.create"]
    assert page["total"] == 6


# --- CLI -------------------------------------------------------------------------------------


async def test_cli_platform_projects_and_keys(
    client: httpx.AsyncClient, database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TOLLHOUSE_SECRET_PEPPER", PEPPER)
    load_settings(_env_file=None)  # the home's other secrets, as `tollhouse serve` makes them

    async def run(*args: str) -> Any:
        result = await asyncio.to_thread(CliRunner().invoke, cli, list(args))
        assert result.exit_code == 0, result.output
        return result

    made = json.loads(
        (
            await run("platform", "create", "--email", "Cli@Example.com", "--password", PASSWORD)
        ).stdout
    )
    bearer = {"Authorization": f"Bearer {made['personal_access_token']}"}
    me = await client.get(f"{API}/me", headers=bearer)
    assert me.status_code == 200, me.text
    assert me.json()["platform"]["id"] == made["platform_id"]

    project = json.loads(
        (await run("projects", "create", made["platform_id"], "Cli App", "--type", "store")).stdout
    )
    status = await client.get(
        "/api/v1/status", headers={"Authorization": f"Bearer {project['secret_key']}"}
    )
    assert status.status_code == 200, status.text
    keys = (await client.get(f"{API}/projects/{project['project_id']}/keys", headers=bearer)).json()
    secret_id = next(k["id"] for k in keys["keys"] if k["kind"] == "secret")

    rolled = json.loads((await run("keys", "roll", secret_id, "--grace-hours", "0")).stdout)
    assert rolled["key"].startswith("sk_test_")
    await run("keys", "revoke", rolled["key_id"])
    listed = {
        k["id"]: k["status"]
        for k in (
            await client.get(f"{API}/projects/{project['project_id']}/keys", headers=bearer)
        ).json()["keys"]
    }
    assert (listed[secret_id], listed[rolled["key_id"]]) == ("expired", "revoked")

    missing = await asyncio.to_thread(CliRunner().invoke, cli, ["keys", "revoke", "key_nope"])
    assert missing.exit_code == 1
    weak = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["platform", "create", "--email", "x@example.com", "--password", "short"],
    )
    assert weak.exit_code == 1


async def test_a_session_cookie_cannot_write_from_another_site(client: httpx.AsyncClient) -> None:
    auth = await signup(client)
    foreign = {**auth, "Origin": "https://evil.example"}
    response = await client.post(
        f"{API}/projects", json={"name": "X", "type": "saas"}, headers=foreign
    )
    assert_error(response, 403, "cross_site_request")
    # Reads stay possible, and the same site may write.
    assert (await client.get(f"{API}/projects", headers=foreign)).status_code == 200
    own = {**auth, "Origin": "http://tollhouse.test"}
    response = await client.post(f"{API}/projects", json={"name": "X", "type": "saas"}, headers=own)
    assert response.status_code == 201, response.text
    listed = (await client.get(f"{API}/projects", headers=auth)).json()
    assert [project["name"] for project in listed["projects"]] == ["X"]


async def test_a_personal_token_is_not_refused_by_the_origin_check(
    client: httpx.AsyncClient,
) -> None:
    auth = await signup(client)
    created = await client.post(f"{API}/tokens", json={"name": "ci"}, headers=auth)
    token = {
        "Authorization": f"Bearer {created.json()['plaintext']}",
        "Origin": "https://ci.example",
    }
    response = await client.post(
        f"{API}/projects", json={"name": "Y", "type": "saas"}, headers=token
    )
    assert response.status_code == 201, response.text


async def test_sign_ups_are_rate_limited_per_address(make_client: ClientFactory) -> None:
    client = await make_client(console_signups_per_minute=2)
    await pin_rate_limit_clock(client, PinnedClock())
    await signup(client, "one@example.com")
    await signup(client, "two@example.com")
    response = await client.post(
        f"{API}/auth/signup", json={"email": "three@example.com", "password": PASSWORD}
    )
    assert_error(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "30"


async def test_password_guessing_is_rate_limited_per_account(make_client: ClientFactory) -> None:
    client = await make_client(console_login_attempts_per_minute=3)
    clock = PinnedClock()
    await pin_rate_limit_clock(client, clock)
    await signup(client, "guess@example.com")
    wrong = {"email": "guess@example.com", "password": "not the password"}
    for _ in range(3):
        assert_error(await client.post(f"{API}/auth/login", json=wrong), 401, "invalid_credentials")
    # Even the right password waits for the window: nothing is learned by guessing faster.
    right = {"email": "Guess@Example.com", "password": PASSWORD}
    response = await client.post(f"{API}/auth/login", json=right)
    body = assert_error(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "30"
    assert body["retryAfter"] == 30
    # Another account is not locked out by it.
    await signup(client, "other@example.com")
    other = {"email": "other@example.com", "password": PASSWORD}
    assert (await client.post(f"{API}/auth/login", json=other)).status_code == 200
    # The next window lets the right password in.
    clock.now += 30
    assert (await client.post(f"{API}/auth/login", json=right)).status_code == 200
