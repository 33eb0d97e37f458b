"""/api/v1/users/* and /api/v1/auth/*: what a user and a gateway can do, and what is stored."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from jwks_server import JwksServer, claims, new_key
from support import PEPPER, SERVICE, ClientFactory, app_of, assert_error, resolve, token_pair
from tollhouse.identity.models import ErasedIdentity, RefreshToken, User
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import keyed_hash

pytestmark = pytest.mark.anyio

ME = "/api/v1/auth/me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def stored_users(client: httpx.AsyncClient) -> list[User]:
    async with app_of(client).state.database.session() as session:
        return list(await session.scalars(select(User)))


async def stored_refresh_tokens(client: httpx.AsyncClient) -> list[RefreshToken]:
    async with app_of(client).state.database.session() as session:
        return list(await session.scalars(select(RefreshToken)))


# --- resolve ------------------------------------------------------------------------------


async def test_resolve_finds_or_creates(client: httpx.AsyncClient) -> None:
    first = await client.post(
        "/api/v1/users/resolve",
        json={"external_id": "auth0|123", "email": "ada@example.com", "display_name": "Ada"},
        headers=SERVICE,
    )
    assert first.status_code == 200
    assert first.json()["created"] is True
    second = await client.post(
        "/api/v1/users/resolve", json={"external_id": "auth0|123"}, headers=SERVICE
    )
    assert second.json() == {"user_id": first.json()["user_id"], "created": False}
    [user] = await stored_users(client)
    assert (user.external_id, user.email, user.display_name) == (
        "auth0|123",
        "ada@example.com",
        "Ada",
    )
    assert user.last_login_at is not None


@pytest.mark.parametrize(
    "external_id",
    [
        "ユーザー🙂",
        "'; DROP TABLE users; --",
        "Robert'); DELETE FROM users WHERE ('1'='1",
        "x" * 255,
    ],
)
async def test_resolve_stores_odd_ids_verbatim(client: httpx.AsyncClient, external_id: str) -> None:
    user = await resolve(client, external_id)
    me = await client.get(ME, headers={**SERVICE, "X-User-ID": user})
    assert me.json()["external_id"] == external_id
    assert len(await stored_users(client)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "external_id"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": "x" * 10_240}, "external_id"),
        ({"external_id": ["a"]}, "external_id"),
        ({"external_id": None}, "external_id"),
        ({"external_id": "ok", "email": "not-an-email"}, "email"),
        ({"external_id": "ok", "display_name": "n" * 201}, "display_name"),
    ],
)
async def test_resolve_rejects_bad_bodies_and_writes_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/v1/users/resolve", json=body, headers=SERVICE)
    error = assert_error(response, 422, "validation_error")
    assert ["body", field] in [err["loc"] for err in error["detail"]]
    assert await stored_users(client) == []


async def test_concurrent_first_resolves_make_one_user(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/users/resolve", json={"external_id": "racer"}, headers=SERVICE)
            for _ in range(20)
        )
    )
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.json()["user_id"] for r in responses}) == 1
    assert sum(r.json()["created"] for r in responses) == 1
    assert len(await stored_users(client)) == 1


async def test_concurrent_resolves_on_separate_app_instances(
    make_client: ClientFactory, postgres_only: str
) -> None:
    # Separate apps, separate connection pools: the database alone keeps them from racing.
    clients = [await make_client(database_pool_size=5, database_max_overflow=0) for _ in range(4)]
    responses = await asyncio.gather(
        *(
            c.post("/api/v1/users/resolve", json={"external_id": f"multi-{n % 3}"}, headers=SERVICE)
            for n in range(30)
            for c in clients
        )
    )
    assert {r.status_code for r in responses} == {200}
    assert sum(r.json()["created"] for r in responses) == 3
    assert len(await stored_users(clients[0])) == 3


# --- tokens -------------------------------------------------------------------------------


async def test_service_issues_a_token_pair(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "tok-user", email="t@example.com")
    pair = await token_pair(client, "tok-user")
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 15 * 60
    me = await client.get(ME, headers=bearer(pair["access_token"]))
    assert me.json()["id"] == user
    assert me.json()["email"] == "t@example.com"
    [stored] = await stored_refresh_tokens(client)
    assert stored.token_hash != pair["refresh_token"]
    assert pair["refresh_token"] not in stored.token_hash
    missing = await client.post("/api/v1/auth/token", json={"user_id": "ghost"}, headers=SERVICE)
    assert_error(missing, 404, "user_not_found")


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    first = await token_pair(client, user)
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get(ME, headers=bearer(second["access_token"]))).status_code == 200

    replay = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert_error(replay, 401, "refresh_token_reused")
    # The replay burned the legitimate successor too (it may be the thief's).
    after = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert_error(after, 401, "refresh_token_reused")
    assert all(t.revoked_at is not None for t in await stored_refresh_tokens(client))


async def test_reuse_revokes_only_that_family(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    phone = await token_pair(client, user)
    laptop = await token_pair(client, user)
    await client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    await client.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    other = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]}
    )
    assert other.status_code == 200


async def test_unknown_and_expired_refresh_tokens(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"})
    assert_error(unknown, 401, "invalid_refresh_token")
    user = await resolve(client)
    pair = await token_pair(client, user)
    async with app_of(client).state.database.session() as session:
        await session.execute(
            update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert_error(expired, 401, "refresh_token_expired")
    [stored] = await stored_refresh_tokens(client)
    assert stored.revoked_at is not None
    malformed = await client.post("/api/v1/auth/refresh", json={"refresh_token": 42})
    assert_error(malformed, 422, "validation_error")


async def test_logout_revokes_and_reveals_nothing(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    pair = await token_pair(client, user)
    out = await client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert out.json() == {"detail": "Logged out"}
    unknown = await client.post("/api/v1/auth/logout", json={"refresh_token": "never-issued"})
    assert unknown.status_code == 200
    assert unknown.json() == {"detail": "Logged out"}
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 401


async def test_deactivating_the_account_locks_every_way_in(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "leaver")
    pair = await token_pair(client, user)
    gone = await client.delete("/api/v1/auth/account", headers=bearer(pair["access_token"]))
    assert gone.json() == {"detail": "Account deactivated"}
    assert_error(
        await client.get(ME, headers=bearer(pair["access_token"])),
        401,
        "user_not_found_or_inactive",
    )
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refresh.status_code == 401
    assert_error(
        await client.get(ME, headers={**SERVICE, "X-User-ID": user}), 404, "user_not_found"
    )
    again = await client.post(
        "/api/v1/users/resolve", json={"external_id": "leaver"}, headers=SERVICE
    )
    assert_error(again, 403, "user_deactivated")


# --- Apple and Google sign-in ---------------------------------------------------------------


@pytest.fixture
def provider() -> Iterator[JwksServer]:
    server = JwksServer(keys=[new_key("apple-1"), new_key("google-1")]).start()
    yield server
    server.stop()


async def test_sign_in_with_apple(make_client: ClientFactory, provider: JwksServer) -> None:
    client = await make_client(apple_bundle_id="com.example.app", apple_jwks_url=provider.url)
    token = provider.sign(
        provider.keys[0],
        claims(
            "https://appleid.apple.com",
            "com.example.app",
            "001.apple",
            email="x@icloud.com",
            email_verified="true",
        ),
    )
    first = await client.post("/api/v1/auth/apple", json={"identity_token": token})
    assert first.status_code == 200, first.text
    me = (await client.get(ME, headers=bearer(first.json()["access_token"]))).json()
    assert me["external_id"] == "apple:001.apple"
    assert me["email"] == "x@icloud.com"
    second = await client.post("/api/v1/auth/apple", json={"identity_token": token})
    me_again = (await client.get(ME, headers=bearer(second.json()["access_token"]))).json()
    assert me_again["id"] == me["id"]
    wrong_app = provider.sign(
        provider.keys[0], claims("https://appleid.apple.com", "com.other.app", "001")
    )
    assert_error(
        await client.post("/api/v1/auth/apple", json={"identity_token": wrong_app}),
        401,
        "invalid_token",
    )
    assert len(await stored_users(client)) == 1


@pytest.mark.parametrize("issuer", ["https://accounts.google.com", "accounts.google.com"])
async def test_sign_in_with_google(
    make_client: ClientFactory, provider: JwksServer, issuer: str
) -> None:
    client = await make_client(google_oauth_client_id="web-client", google_jwks_url=provider.url)
    token = provider.sign(provider.keys[1], claims(issuer, "web-client", "g-77"))
    response = await client.post("/api/v1/auth/google", json={"id_token": token})
    assert response.status_code == 200, response.text
    me = (await client.get(ME, headers=bearer(response.json()["access_token"]))).json()
    assert me["external_id"] == "google:g-77"


async def test_a_google_token_cannot_sign_in_with_apple(
    make_client: ClientFactory, provider: JwksServer
) -> None:
    client = await make_client(
        apple_bundle_id="com.example.app",
        apple_jwks_url=provider.url,
        google_oauth_client_id="web-client",
        google_jwks_url=provider.url,
    )
    google = provider.sign(
        provider.keys[1], claims("https://accounts.google.com", "web-client", "g-1")
    )
    assert_error(
        await client.post("/api/v1/auth/apple", json={"identity_token": google}),
        401,
        "invalid_token",
    )


async def test_unconfigured_sign_in_is_a_503(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/apple", json={"identity_token": "x.y.z"})
    body = assert_error(response, 503, "sign_in_disabled")
    assert "APPLE_BUNDLE_ID" in body["message"]
    assert_error(
        await client.post("/api/v1/auth/google", json={"id_token": "x"}), 503, "sign_in_disabled"
    )


# --- GDPR ---------------------------------------------------------------------------------


async def test_export_has_a_section_per_domain(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "exporter", email="e@example.com")
    pair = await token_pair(client, user)
    export = await client.get("/api/v1/users/me/export", headers=bearer(pair["access_token"]))
    assert export.status_code == 200
    body = export.json()
    assert body["user"]["id"] == user
    assert body["user"]["email"] == "e@example.com"
    assert len(body["sessions"]) == 1
    assert pair["refresh_token"] not in export.text


async def test_erasure_forgets_the_person_and_keeps_the_row(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "forget-me", email="f@example.com", display_name="F")
    pair = await token_pair(client, user)
    erased = await client.delete("/api/v1/users/me", headers=bearer(pair["access_token"]))
    assert erased.status_code == 200
    assert erased.json() == {"id": user, "deleted": True, "message": "Personal data erased"}
    [row] = await stored_users(client)
    assert str(row.id) == user
    assert (row.email, row.display_name, row.external_id, row.is_active) == (
        None,
        None,
        None,
        False,
    )
    assert row.erased_at is not None
    assert all(t.revoked_at is not None for t in await stored_refresh_tokens(client))
    # The external id is free again: the same person signing up later is a new user, but
    # without a second welcome bonus (only a hash of the erased id is kept to know that).
    fresh = await resolve(client, "forget-me")
    assert fresh != user
    assert uuid.UUID(fresh)
    balance = await client.get(
        "/api/v1/credits/balance", headers={**SERVICE, "X-User-ID": "forget-me"}
    )
    assert balance.json() == {"balance": 0, "lifetime_earned": 0, "lifetime_spent": 0}
    [tombstone] = await stored_tombstones(client)
    # Keyed with the server pepper: a database dump cannot confirm a guessed external id.
    assert tombstone.external_id_hash == keyed_hash(PEPPER, erased_id(row.project_id, "forget-me"))
    assert tombstone.external_id_hash != plain_sha256(row.project_id, "forget-me")
    # Another id (never erased) still gets the bonus.
    await resolve(client, "someone-else")
    other = await client.get(
        "/api/v1/credits/balance", headers={**SERVICE, "X-User-ID": "someone-else"}
    )
    assert other.json()["balance"] == 50


def erased_id(project_id: str, external_id: str) -> str:
    return f"tollhouse-erased\0{project_id}\0{external_id}"


def plain_sha256(project_id: str, external_id: str) -> str:
    """How tombstones were written before they were keyed."""
    return hashlib.sha256(erased_id(project_id, external_id).encode()).hexdigest()


async def test_a_tombstone_written_unkeyed_still_refuses_a_second_bonus(
    client: httpx.AsyncClient,
) -> None:
    first = await resolve(client, "erased-long-ago")
    pair = await token_pair(client, first)
    assert (
        await client.delete("/api/v1/users/me", headers=bearer(pair["access_token"]))
    ).status_code == 200
    [tombstone] = await stored_tombstones(client)
    async with app_of(client).state.database.session() as session:
        # As an older release left it: the unkeyed SHA-256 of the same id.
        await session.execute(
            update(ErasedIdentity).values(
                external_id_hash=plain_sha256(tombstone.project_id, "erased-long-ago")
            )
        )
    await resolve(client, "erased-long-ago")
    balance = await client.get(
        "/api/v1/credits/balance", headers={**SERVICE, "X-User-ID": "erased-long-ago"}
    )
    assert balance.json()["lifetime_earned"] == 0


async def stored_tombstones(client: httpx.AsyncClient) -> list[ErasedIdentity]:
    async with app_of(client).state.database.session() as session:
        return list(await session.scalars(select(ErasedIdentity)))


async def test_json_body_without_its_content_type_is_told_so(client: httpx.AsyncClient) -> None:
    for content_type in (None, "application/x-www-form-urlencoded", "text/plain"):
        headers = {**SERVICE, **({"Content-Type": content_type} if content_type else {})}
        response = await client.post(
            "/api/v1/users/resolve", content=b'{"external_id": "x"}', headers=headers
        )
        body = assert_error(response, 415, "unsupported_media_type")
        assert "Content-Type: application/json" in body["message"]
        assert (content_type or "nothing") in body["message"]
    # A missing body is still the validation error it was; a JSON body is served.
    assert_error(
        await client.post("/api/v1/users/resolve", headers=SERVICE), 422, "validation_error"
    )
    assert (await resolve(client, "x")) is not None


async def test_user_routes_refuse_a_system_caller(client: httpx.AsyncClient) -> None:
    assert_error(
        await client.get("/api/v1/users/me/export", headers=SERVICE), 401, "authentication_required"
    )
    assert_error(
        await client.delete("/api/v1/users/me", headers=SERVICE), 401, "authentication_required"
    )


async def test_concurrent_read_then_write_transactions_wait_instead_of_failing(
    make_client: ClientFactory,
) -> None:
    # Refresh reads the token, then writes: the pattern SQLite answers "database is locked"
    # to unless writers take the lock up front. Separate apps mean separate connections.
    clients = [await make_client() for _ in range(4)]
    user = await resolve(clients[0])
    pairs = [await token_pair(clients[0], user) for _ in range(24)]
    responses = await asyncio.gather(
        *(
            clients[n % 4].post("/api/v1/auth/refresh", json={"refresh_token": p["refresh_token"]})
            for n, p in enumerate(pairs)
        )
    )
    assert [r.status_code for r in responses] == [200] * 24
