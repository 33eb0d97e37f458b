"""Every way in, and every way of being refused (identity/caller.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import update

from jwks_server import JwksServer, SigningKey, claims, new_key
from support import (
    ADMIN_KEY,
    JWT_SECRET,
    SERVICE,
    SERVICE_KEY,
    SIGNING_SECRET,
    ClientFactory,
    PinnedClock,
    app_of,
    assert_error,
    pin_caller_cache_clock,
    resolve,
    token_pair,
)
from tollhouse.identity.gateway_signing import sign
from tollhouse.identity.models import User

pytestmark = pytest.mark.anyio

ME = "/api/v1/auth/me"
STATUS = "/api/v1/status"
ISSUER = "https://id.example.test"
AUDIENCE = "tollhouse-api"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed(
    method: str, path: str, user: str = "", *, at: int | None = None, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    timestamp = str(at if at is not None else int(time.time()))
    headers = {
        "X-Gateway-Timestamp": timestamp,
        "X-Gateway-Signature": sign(secret, method, path, user, timestamp),
    }
    if user:
        headers["X-User-Id"] = user
    return headers


async def caller_of(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get(STATUS, headers=headers)
    assert response.status_code == 200, response.text
    caller: dict[str, Any] = response.json()["caller"]
    return caller


# --- service key -------------------------------------------------------------------------


async def test_service_key_with_user_id_acts_as_that_user(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "ext-42", email="a@example.com")
    by_id = await client.get(ME, headers={**SERVICE, "X-User-ID": user})
    assert by_id.status_code == 200
    assert by_id.json()["id"] == user
    by_external = await client.get(ME, headers={**SERVICE, "X-User-ID": "ext-42"})
    assert by_external.json()["id"] == user
    caller = await caller_of(client, {**SERVICE, "X-User-ID": user})
    assert caller == {
        "kind": "service",
        "project_id": caller["project_id"],
        "user_id": user,
        "metered": True,
    }


async def test_service_key_with_unknown_user_points_to_resolve(client: httpx.AsyncClient) -> None:
    body = assert_error(
        await client.get(ME, headers={**SERVICE, "X-User-ID": "nobody"}), 404, "user_not_found"
    )
    assert "POST /api/v1/users/resolve" in body["message"]


async def test_service_key_alone_is_an_unmetered_system_caller(client: httpx.AsyncClient) -> None:
    caller = await caller_of(client, SERVICE)
    assert caller["kind"] == "system"
    assert caller["metered"] is False
    assert caller["user_id"] is None
    # A system caller has no user: user routes still say who is missing.
    assert_error(await client.get(ME, headers=SERVICE), 401, "authentication_required")


@pytest.mark.parametrize("key", ["wrong", "", SERVICE_KEY + "x", SERVICE_KEY[:-1]])
async def test_wrong_service_key_is_refused(client: httpx.AsyncClient, key: str) -> None:
    response = await client.get(ME, headers={"X-Service-Key": key, "X-User-ID": "x"})
    assert_error(response, 403, "invalid_service_key")


async def test_service_routes_refuse_other_callers(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/users/resolve", json={"external_id": "x"})
    assert_error(response, 403, "service_key_required")
    user = await resolve(client)
    pair = await token_pair(client, user)
    as_user = await client.post(
        "/api/v1/users/resolve", json={"external_id": "y"}, headers=bearer(pair["access_token"])
    )
    assert_error(as_user, 403, "service_key_required")


async def test_required_signature_refuses_the_plain_service_key(
    make_client: ClientFactory,
) -> None:
    client = await make_client(require_signed_gateway=True)
    assert_error(await client.get(STATUS, headers=SERVICE), 403, "gateway_signature_required")
    assert (await caller_of(client, signed("GET", STATUS)))["kind"] == "system"


async def test_unconfigured_service_key_is_a_503(make_client: ClientFactory) -> None:
    client = await make_client(tollhouse_env="production", flash_service_key=None)
    assert_error(await client.get(STATUS, headers=SERVICE), 503, "service_key_not_configured")


# --- signed gateway requests ----------------------------------------------------------------


async def test_signed_request_acts_as_the_user(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "gw-user")
    response = await client.get(ME, headers=signed("GET", ME, user))
    assert response.status_code == 200
    assert response.json()["id"] == user
    by_external = await client.get(ME, headers=signed("GET", ME, "gw-user"))
    assert by_external.json()["id"] == user


async def test_signed_request_without_user_is_a_system_call(client: httpx.AsyncClient) -> None:
    caller = await caller_of(client, signed("GET", STATUS))
    assert caller["kind"] == "system"
    assert caller["metered"] is False


async def test_metered_false_is_honoured_only_from_trusted_callers(
    client: httpx.AsyncClient,
) -> None:
    """A valid signature or the service key (services that meter for themselves, issue 12
    §3); never a user's own request."""
    user = await resolve(client, "gw-metered")
    unmetered = await caller_of(
        client, {**signed("GET", STATUS, user), "X-Gateway-Metered": "true"}
    )
    assert unmetered["metered"] is False
    relayed = await caller_of(client, {**SERVICE, "X-User-ID": user, "X-Gateway-Metered": "true"})
    assert relayed["metered"] is False
    assert (await caller_of(client, {**SERVICE, "X-User-ID": user}))["metered"] is True
    token = (await token_pair(client, user))["access_token"]
    bearer = {"Authorization": f"Bearer {token}", "X-Gateway-Metered": "true"}
    assert (await caller_of(client, bearer))["metered"] is True


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (lambda h, u: signed("GET", STATUS, u, at=int(time.time()) - 301), "stale"),
        (lambda h, u: signed("GET", STATUS, u, at=int(time.time()) + 301), "future"),
        (lambda h, u: signed("GET", "/api/v1/other", u), "path"),
        (lambda h, u: signed("POST", STATUS, u), "method"),
        (lambda h, u: {**signed("GET", STATUS, u), "X-User-Id": "someone-else"}, "user"),
        (
            lambda h, u: signed("GET", STATUS, u, secret="another-secret-of-forty-characters!!"),
            "key",
        ),
        (
            lambda h, u: {
                **h,
                "X-Gateway-Signature": h["X-Gateway-Signature"].replace("v1=", "v2="),
            },
            "ver",
        ),
        (lambda h, u: {**h, "X-Gateway-Signature": "v1="}, "empty digest"),
        (lambda h, u: {**h, "X-Gateway-Timestamp": "soon"}, "timestamp not an integer"),
        (lambda h, u: {"X-Gateway-Signature": h["X-Gateway-Signature"], "X-User-Id": u}, "no ts"),
    ],
)
async def test_bad_signatures_are_refused_with_no_fallback(
    client: httpx.AsyncClient, tamper: Any, why: str
) -> None:
    user = await resolve(client, "gw-victim")
    headers = tamper(signed("GET", STATUS, user), user)
    # Even a correct service key alongside does not rescue a bad signature.
    response = await client.get(STATUS, headers={**headers, **SERVICE})
    assert_error(response, 403, "invalid_gateway_signature")


async def test_signatures_are_refused_when_no_secret_is_configured(
    make_client: ClientFactory,
) -> None:
    client = await make_client(gateway_signing_secret=None)
    assert_error(
        await client.get(STATUS, headers=signed("GET", STATUS)), 403, "invalid_gateway_signature"
    )


# --- our own JWTs -----------------------------------------------------------------------


def own_token(**overrides: Any) -> str:
    now = int(time.time())
    payload = {"sub": "", "iat": now, "exp": now + 600, "type": "access", "iss": "tollhouse"}
    payload.update(overrides)
    return jwt.encode(payload, JWT_SECRET, algorithm="HS256")


def unsigned_token(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


async def test_own_access_token_acts_as_the_user(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "jwt-user")
    pair = await token_pair(client, user)
    response = await client.get(ME, headers=bearer(pair["access_token"]))
    assert response.status_code == 200
    assert response.json()["id"] == user
    assert (await caller_of(client, bearer(pair["access_token"])))["kind"] == "user"


async def test_own_token_rejections(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "jwt-victim")
    now = int(time.time())
    cases = {
        "token_expired": own_token(sub=user, iat=now - 1200, exp=now - 600),
        "wrong_token_type": own_token(sub=user, type="refresh"),
        "invalid_token": jwt.encode(
            {"sub": user, "iat": now, "exp": now + 600, "type": "access"},
            "a-different-secret-of-at-least-32-bytes!",
            algorithm="HS256",
        ),
    }
    for code, token in cases.items():
        assert_error(await client.get(ME, headers=bearer(token)), 401, code)
    for garbage in (
        unsigned_token({"sub": user, "iat": now, "exp": now + 600, "type": "access"}),
        "not.a.jwt",
        "abc",
        own_token(sub="not-a-uuid"),
        own_token(sub=user, exp=None),
    ):
        assert_error(await client.get(ME, headers=bearer(garbage)), 401, "invalid_token")


async def test_token_of_an_unknown_user_is_refused(client: httpx.AsyncClient) -> None:
    token = own_token(sub="6c3e2b1a-0000-4000-8000-000000000000")
    assert_error(await client.get(ME, headers=bearer(token)), 401, "user_not_found_or_inactive")


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer ", "Token x"])
async def test_malformed_authorization_header(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get(ME, headers={"Authorization": header})
    body = assert_error(response, 401, "authentication_required")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization" in body["message"]


async def test_no_credentials_on_a_user_route(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(ME), 401, "authentication_required")


@pytest.mark.parametrize("key", ["sk_test_abc", "sk_live_abc", "pk_test_abc"])
async def test_platform_keys_that_do_not_exist_are_refused(
    client: httpx.AsyncClient, key: str
) -> None:
    assert_error(await client.get(STATUS, headers=bearer(key)), 401, "invalid_api_key")


async def test_unknown_publishable_key_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get(STATUS, headers={"X-Publishable-Key": "pk_test_nope"})
    assert_error(response, 401, "invalid_api_key")


# --- admin key and AUTH_ENABLED -----------------------------------------------------------


async def test_admin_key(make_client: ClientFactory) -> None:
    client = await make_client()
    assert (await caller_of(client, {"X-Admin-Key": ADMIN_KEY}))["kind"] == "admin"
    assert_error(
        await client.get(STATUS, headers={"X-Admin-Key": "nope"}), 403, "invalid_admin_key"
    )
    disabled = await make_client(admin_api_key=None)
    assert_error(
        await disabled.get(STATUS, headers={"X-Admin-Key": ADMIN_KEY}), 403, "admin_disabled"
    )


async def test_auth_disabled_lets_anonymous_callers_in(make_client: ClientFactory) -> None:
    client = await make_client(auth_enabled=False)
    caller = await caller_of(client, {})
    assert caller["kind"] == "anonymous"
    assert caller["metered"] is False
    # A user route still needs a user, and a bad credential is still refused.
    assert_error(await client.get(ME), 401, "authentication_required")
    assert_error(await client.get(STATUS, headers=bearer("forged")), 401, "invalid_token")
    enabled = await make_client()
    assert_error(await enabled.get(STATUS), 401, "authentication_required")


# --- external issuers (JWKS) -------------------------------------------------------------


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    server = JwksServer(keys=[new_key("rsa-1", "RS256"), new_key("ec-1", "ES256")]).start()
    yield server
    server.stop()


def issuer_settings(idp: JwksServer, **extra: Any) -> dict[str, Any]:
    return {
        "jwt_issuers": [
            {
                "issuer": ISSUER,
                "jwks_url": idp.url,
                "audience": AUDIENCE,
                "external_id_prefix": "idp:",
            }
        ],
        "jwks_refetch_cooldown_seconds": 0,
        **extra,
    }


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
async def test_external_issuer_token_signs_the_user_in(
    make_client: ClientFactory, idp: JwksServer, kid: str
) -> None:
    client = await make_client(**issuer_settings(idp))
    key = next(k for k in idp.keys if k.kid == kid)
    token = idp.sign(
        key, claims(ISSUER, AUDIENCE, "alice", email="alice@example.com", email_verified=True)
    )
    first = await client.get(ME, headers=bearer(token))
    assert first.status_code == 200, first.text
    assert first.json()["external_id"] == "idp:alice"
    assert first.json()["email"] == "alice@example.com"
    again = await client.get(ME, headers=bearer(token))
    assert again.json()["id"] == first.json()["id"]
    assert idp.hits == 1


async def test_unverified_email_is_not_stored(make_client: ClientFactory, idp: JwksServer) -> None:
    client = await make_client(**issuer_settings(idp))
    token = idp.sign(idp.keys[0], claims(ISSUER, AUDIENCE, "bob", email="bob@example.com"))
    assert (await client.get(ME, headers=bearer(token))).json()["email"] is None


async def test_external_token_rejections(make_client: ClientFactory, idp: JwksServer) -> None:
    client = await make_client(**issuer_settings(idp))
    rsa_key = idp.keys[0]
    stranger = new_key("rsa-1", "RS256")  # a known kid, but not the issuer's key
    now = int(time.time())
    cases: dict[str, str] = {
        "wrong audience": idp.sign(rsa_key, claims(ISSUER, "someone-else", "carol")),
        "foreign key": idp.sign(stranger, claims(ISSUER, AUDIENCE, "carol")),
        "unknown kid": idp.sign(new_key("rsa-9"), claims(ISSUER, AUDIENCE, "carol")),
        "no aud": idp.sign(
            rsa_key, {k: v for k, v in claims(ISSUER, AUDIENCE, "c").items() if k != "aud"}
        ),
        "no sub": idp.sign(
            rsa_key, {k: v for k, v in claims(ISSUER, AUDIENCE, "c").items() if k != "sub"}
        ),
        "alg none": unsigned_token(claims(ISSUER, AUDIENCE, "carol")),
        # The classic confusion attack: HS256 keyed with the issuer's public key.
        "hs256 with public key": _hs256_with_public_key(rsa_key, claims(ISSUER, AUDIENCE, "carol")),
        # An issuer we do not trust, signed by a key we do: falls to our own check and fails.
        "wrong issuer": idp.sign(rsa_key, claims("https://evil.example", AUDIENCE, "carol")),
    }
    for why, token in cases.items():
        response = await client.get(ME, headers=bearer(token))
        assert response.status_code == 401, why
        assert_error(response, 401, "invalid_token")
    expired = idp.sign(rsa_key, claims(ISSUER, AUDIENCE, "carol", iat=now - 1200, exp=now - 600))
    assert_error(await client.get(ME, headers=bearer(expired)), 401, "token_expired")
    nobody = await client.post("/api/v1/auth/token", json={"user_id": "idp:carol"}, headers=SERVICE)
    assert_error(nobody, 404, "user_not_found")


def _hs256_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = ".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
        for part in (header, payload)
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


async def test_key_rotation_is_picked_up(make_client: ClientFactory, idp: JwksServer) -> None:
    client = await make_client(**issuer_settings(idp))
    old = idp.keys[0]
    assert (
        await client.get(ME, headers=bearer(idp.sign(old, claims(ISSUER, AUDIENCE, "dan"))))
    ).status_code == 200
    rotated = new_key("rsa-2")
    idp.keys = [rotated]
    response = await client.get(
        ME, headers=bearer(idp.sign(rotated, claims(ISSUER, AUDIENCE, "dan")))
    )
    assert response.status_code == 200, response.text
    assert idp.hits == 2


async def test_unknown_kid_refetches_are_rate_limited(
    make_client: ClientFactory, idp: JwksServer
) -> None:
    client = await make_client(**issuer_settings(idp, jwks_refetch_cooldown_seconds=60))
    good = idp.sign(idp.keys[0], claims(ISSUER, AUDIENCE, "erin"))
    assert (await client.get(ME, headers=bearer(good))).status_code == 200
    for n in range(5):
        spray = idp.sign(new_key(f"spray-{n}"), claims(ISSUER, AUDIENCE, "erin"))
        assert_error(await client.get(ME, headers=bearer(spray)), 401, "invalid_token")
    # One fetch to start, none more inside the cooldown however many unknown kids arrive.
    assert idp.hits == 1


async def test_unreachable_jwks_is_a_503(make_client: ClientFactory, idp: JwksServer) -> None:
    client = await make_client(**issuer_settings(idp))
    token = idp.sign(idp.keys[0], claims(ISSUER, AUDIENCE, "fay"))
    idp.stop()
    assert_error(await client.get(ME, headers=bearer(token)), 503, "issuer_unavailable")


# --- the per-process caller cache -----------------------------------------------------------


async def test_another_process_deactivating_a_user_is_seen_within_the_cache_window(
    make_client: ClientFactory,
) -> None:
    client = await make_client(caller_cache_seconds=2)
    clock = PinnedClock(time.time())  # the access token's exp is on the same clock
    pin_caller_cache_clock(client, clock)
    user = await resolve(client, "cached")
    pair = await token_pair(client, user)
    paths = [bearer(pair["access_token"]), {**SERVICE, "X-User-ID": user}]
    for headers in paths:
        assert (await client.get(ME, headers=headers)).status_code == 200
    # As another replica would: straight in the database, not through this process.
    async with app_of(client).state.database.session() as session:
        await session.execute(update(User).values(is_active=False))
    for headers in paths:
        assert (await client.get(ME, headers=headers)).status_code == 200  # still cached
    clock.now += 2.01
    assert_error(await client.get(ME, headers=paths[0]), 401, "user_not_found_or_inactive")
    assert_error(await client.get(ME, headers=paths[1]), 404, "user_not_found")


async def test_no_cache_means_every_request_is_checked(make_client: ClientFactory) -> None:
    client = await make_client(caller_cache_seconds=0)
    user = await resolve(client, "uncached")
    pair = await token_pair(client, user)
    assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
    async with app_of(client).state.database.session() as session:
        await session.execute(update(User).values(is_active=False))
    response = await client.get(ME, headers=bearer(pair["access_token"]))
    assert_error(response, 401, "user_not_found_or_inactive")


async def test_an_expired_token_is_not_served_from_the_cache(make_client: ClientFactory) -> None:
    client = await make_client(caller_cache_seconds=60)  # the token's exp ends it, not the TTL
    clock = PinnedClock(float(int(time.time())))
    pin_caller_cache_clock(client, clock)
    user = await resolve(client, "short-lived")
    token = own_token(sub=user, iat=int(clock.now), exp=int(clock.now) + 5)
    assert (await client.get(ME, headers=bearer(token))).status_code == 200
    clock.now += 4
    assert (await client.get(ME, headers=bearer(token))).status_code == 200
    clock.now += 1.5
    assert_error(await client.get(ME, headers=bearer(token)), 401, "token_expired")
