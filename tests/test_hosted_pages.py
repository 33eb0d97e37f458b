"""The hosted end-user pages through HTTP: sign-up with a mailed verification, sign-in back
to the app with a token the Platform API accepts, refresh after a plan change, account,
password reset, and every refusal (CSRF, open redirect, unknown key, rate limit)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from hosted_support import (
    APP_ORIGIN,
    PASSWORD,
    csrf_of,
    hosted_project,
    last_mail_link,
    query,
    sign_up_verified,
    submit,
    token_of,
)
from platform_fixtures import database
from support import ClientFactory, app_of
from tollhouse.identity.models import EndUserCredential, User

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    # Development: cookies without `Secure`, so the plain-http test client sends them back.
    return await make_client(tollhouse_env="development", hosted_auth_attempts_per_minute=5)


async def test_sign_up_verify_and_land_on_the_app_with_a_working_token(
    client: httpx.AsyncClient,
) -> None:
    keys = await hosted_project(client)
    page = await client.get("/signup", params=query(keys))
    assert page.status_code == 200
    assert "Create your app account" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert f"form-action 'self' {APP_ORIGIN}" in policy
    csrf_cookie = page.headers["set-cookie"]
    assert "HttpOnly" in csrf_cookie
    assert "samesite=lax" in csrf_cookie.lower()

    token = await sign_up_verified(client, keys)
    usage = await client.post("/api/data", headers={**keys.publishable, "X-Clerk-Token": token})
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["usage"]["count"] == 1
    assert body["usage"]["plan"] == "free"
    async with database(client).session() as session:
        credential = await session.scalar(select(EndUserCredential))
        assert credential is not None
        assert credential.email == "ada@example.com"
        assert credential.email_verified_at is not None
        assert credential.password_hash.startswith("$argon2id$")
        user = await session.get_one(User, credential.user_id)
        assert user.project_id == keys.project_id

    # The verification link works once.
    link = urlsplit(await last_mail_link(client, "ada@example.com"))
    params = {k: v[0] for k, v in parse_qs(link.query).items()}
    again = await submit(client, "/verify", params, token=params["token"])
    assert again.status_code == 400
    assert "invalid, used or expired" in again.text


async def test_sign_in_needs_a_verified_address_and_the_right_password(
    client: httpx.AsyncClient,
) -> None:
    keys = await hosted_project(client)
    await submit(client, "/signup", query(keys), email="bo@example.com", password=PASSWORD)
    client.cookies.clear()
    unverified = await submit(
        client, "/signin", query(keys), email="bo@example.com", password=PASSWORD
    )
    assert unverified.status_code == 403
    assert "Confirm your email" in unverified.text

    await sign_up_verified(client, keys, "cy@example.com")
    client.cookies.clear()
    wrong = await submit(client, "/signin", query(keys), email="cy@example.com", password="x" * 12)
    assert wrong.status_code == 401
    assert "Email or password is wrong" in wrong.text
    assert PASSWORD not in wrong.text
    signed_in = await submit(
        client, "/signin", query(keys), email="CY@example.com", password=PASSWORD
    )
    assert signed_in.status_code == 303
    token_of(signed_in.headers["location"])
    # Signed in here now: /signin hands straight back.
    again = await client.get("/signin", params=query(keys))
    assert again.status_code == 303
    assert token_of(again.headers["location"])


async def test_refresh_mints_the_plan_as_it_is_now(client: httpx.AsyncClient) -> None:
    keys = await hosted_project(client)
    first = await sign_up_verified(client, keys)
    me = await client.get("/api/usage", headers={**keys.publishable, "X-Clerk-Token": first})
    user_id = me.json()["userId"]
    changed = await client.patch(
        f"/api/customers/{user_id}", json={"plan": "pro"}, headers=keys.secret
    )
    assert changed.status_code == 200, changed.text

    refreshed = await client.get("/refresh", params=query(keys))
    assert refreshed.status_code == 303
    token = token_of(refreshed.headers["location"])
    claims = app_of(client).state.identity.end_user_signer.verify(token)
    assert claims.plan == "pro"
    assert claims.subject == user_id
    usage = await client.get("/api/usage", headers={**keys.publishable, "X-Clerk-Token": token})
    assert usage.json()["plan"] == "pro"
    assert usage.json()["limit"] == 10

    client.cookies.clear()
    anonymous = await client.get("/refresh", params=query(keys))
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/signin?")


async def test_account_changes_details_shows_the_plan_and_signs_out(
    client: httpx.AsyncClient,
) -> None:
    keys = await hosted_project(client)
    await sign_up_verified(client, keys)
    page = await client.get("/account", params=query(keys))
    assert page.status_code == 200
    assert "Free" in page.text
    assert "ada@example.com" in page.text
    saved = await client.post(
        "/account",
        params=query(keys),
        data={"csrf_token": csrf_of(page), "first_name": "Ada", "last_name": "Lovelace"},
    )
    assert saved.status_code == 303
    async with database(client).session() as session:
        user = await session.scalar(select(User).where(User.email == "ada@example.com"))
        assert user is not None
        assert (user.first_name, user.last_name) == ("Ada", "Lovelace")
    no_billing = await client.get("/account/billing", params=query(keys))
    assert no_billing.status_code in (400, 503)
    assert "Your account" in no_billing.text

    page = await client.get("/account", params=query(keys))
    out = await client.post("/signout", params=query(keys), data={"csrf_token": csrf_of(page)})
    assert out.status_code == 303
    after = await client.get("/account", params=query(keys))
    assert after.status_code == 303
    assert "next=account" in after.headers["location"]


async def test_password_reset_by_mail_signs_other_sessions_out(client: httpx.AsyncClient) -> None:
    keys = await hosted_project(client)
    await sign_up_verified(client, keys)
    old_session = dict(client.cookies)
    forgot = await submit(client, "/forgot", query(keys), email="ada@example.com")
    assert forgot.status_code == 200
    assert "If <strong>ada@example.com</strong>" in forgot.text
    unknown = await submit(client, "/forgot", query(keys), email="nobody@example.com")
    assert unknown.status_code == 200  # the same answer: no account probing

    link = urlsplit(await last_mail_link(client, "ada@example.com"))
    params = {k: v[0] for k, v in parse_qs(link.query).items()}
    assert link.path == "/reset"
    weak = await submit(client, "/reset", params, token=params["token"], password="short")
    assert weak.status_code == 400
    assert "between 10 and" in weak.text
    done = await submit(
        client, "/reset", params, token=params["token"], password="a brand new password"
    )
    assert done.status_code == 303
    token_of(done.headers["location"])

    client.cookies.clear()
    client.cookies.update(old_session)
    stale = await client.get("/refresh", params=query(keys))
    assert stale.headers["location"].startswith("/signin?")
    old = await submit(client, "/signin", query(keys), email="ada@example.com", password=PASSWORD)
    assert old.status_code == 401


async def test_forms_without_a_valid_csrf_token_are_refused(client: httpx.AsyncClient) -> None:
    keys = await hosted_project(client)
    fields = {"email": "eve@example.com", "password": PASSWORD}
    missing = await client.post("/signup", params=query(keys), data=fields)
    assert missing.status_code == 403
    assert "did not come from this site" in missing.text
    page = await client.get("/signup", params=query(keys))
    forged = await client.post(
        "/signup", params=query(keys), data={**fields, "csrf_token": "0" * 64}
    )
    assert forged.status_code == 403
    client.cookies.clear()  # the token signs another browser's cookie
    replayed = await client.post(
        "/signup", params=query(keys), data={**fields, "csrf_token": csrf_of(page)}
    )
    assert replayed.status_code == 403
    async with database(client).session() as session:
        assert await session.scalar(select(func.count()).select_from(EndUserCredential)) == 0


@pytest.mark.parametrize(
    "redirect",
    [
        "https://evil.example/steal",
        "https://app.example.evil.example/",
        "http://app.example/",  # the scheme is part of the origin
        "//evil.example/",
        "javascript:alert(1)",
        "/relative",
    ],
)
async def test_a_redirect_outside_the_allowed_origins_is_refused(
    client: httpx.AsyncClient, redirect: str
) -> None:
    keys = await hosted_project(client)
    for path in ("/signup", "/signin", "/refresh"):
        page = await client.get(path, params=query(keys, redirect=redirect))
        assert page.status_code == 400, (path, page.text)
        assert "Redirect not allowed" in page.text
        assert "__clerk_jwt" not in page.headers.get("location", "")


async def test_unknown_revoked_or_missing_keys_get_a_clear_page(client: httpx.AsyncClient) -> None:
    keys = await hosted_project(client)
    missing = await client.get("/signin", params={"redirect": "https://app.example/"})
    assert missing.status_code == 400
    assert "no valid publishable key" in missing.text
    unknown = await client.get("/signin", params=query(keys) | {"pk": keys.pk[:-3] + "abc"})
    assert unknown.status_code == 404
    assert "unknown or has been revoked" in unknown.text
    secret = await client.get("/signin", params=query(keys) | {"pk": keys.sk})
    assert secret.status_code == 400
    revoke = await client.get("/signin", params=query(keys))
    assert revoke.status_code == 200


async def test_sign_in_attempts_are_rate_limited_per_address(client: httpx.AsyncClient) -> None:
    keys = await hosted_project(client)
    statuses = []
    for _ in range(6):
        response = await submit(
            client, "/signin", query(keys), email="mallory@example.com", password="guess-guess-1"
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    other = await submit(
        client, "/signin", query(keys), email="other@example.com", password="x" * 12
    )
    assert other.status_code == 401


async def test_dev_outbox_page_shows_mail_and_is_hidden_in_production(
    client: httpx.AsyncClient, make_client: ClientFactory
) -> None:
    keys = await hosted_project(client)
    await submit(client, "/signup", query(keys), email="dee@example.com", password=PASSWORD)
    outbox = await client.get("/dev/mail", params={"to": "dee@example.com"})
    assert outbox.status_code == 200
    assert "app: confirm your email" in outbox.text
    assert "/verify?pk=" in outbox.text
    css = await client.get("/static/tollhouse.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


async def test_cookies_are_secure_outside_development(make_client: ClientFactory) -> None:
    client = await make_client()
    keys = await hosted_project(client)
    page = await client.get("/signup", params=query(keys))
    assert "secure" in page.headers["set-cookie"].lower()


async def test_oauth_complete_needs_a_verified_token(client: httpx.AsyncClient) -> None:
    keys = await hosted_project(client)
    anonymous = await client.post(
        "/oauth/complete", json={"userId": "user_1", "publishableKey": keys.pk}
    )
    assert anonymous.status_code == 401
    token = await sign_up_verified(client, keys)
    done = await client.post(
        "/oauth/complete", headers={**keys.publishable, "X-Clerk-Token": token}
    )
    assert done.status_code == 200, done.text
    assert done.json()["success"] is True
    assert done.json()["token"]
