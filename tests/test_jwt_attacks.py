"""Attacks on token verification (issue 12 §1, §6): every forged, stale, misdirected or mixed
token is a 401/403 in the envelope — never a 500, never another project's user."""

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
from sqlalchemy import insert

from jwks_server import JwksServer, SigningKey, claims, new_key
from platform_fixtures import Keys, create_customer, database, new_project, set_project, user_token
from support import JWT_SECRET, ClientFactory, assert_error, resolve, token_pair
from tollhouse.upstreams.models import UpstreamRoute

pytestmark = pytest.mark.anyio

ME = "/api/v1/auth/me"
USAGE = "/api/usage"
DATA = "/api/data"
ISSUER = "https://id.example.test"
AUDIENCE = "tollhouse-api"
PROJECT_ISSUER = "https://idp.project-a.test"


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    """One IdP for the module: an RSA and an EC key (key generation is the slow part)."""
    server = JwksServer(keys=[new_key("rsa-1", "RS256"), new_key("ec-1", "ES256")]).start()
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], key: bytes = b"") -> str:
    """A token assembled by hand: any header, HMAC-SHA256 under `key` (empty: no signature)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if not key:
        return signing_input + "."
    return signing_input + "." + b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def public_pem(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def own_claims(user: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "tollhouse",
        "sub": user,
        "iat": now,
        "exp": now + 600,
        "type": "access",
        **overrides,
    }


# --- §1: one project's IdP token never acts in another project --------------------------------


async def two_projects(client: httpx.AsyncClient, idp: JwksServer) -> tuple[Keys, Keys, str]:
    """A brings its own IdP (ours to sign with); B is a victim with a customer; B has a /gw
    route (to the IdP's server, which answers any GET). Returns B's customer id."""
    a = await new_project(client, name="a")
    b = await new_project(client, name="b")
    await set_project(
        client,
        a.project_id,
        end_user_issuer=PROJECT_ISSUER,
        end_user_jwks_url=idp.url,
        end_user_audience="project-a",
    )
    victim = await create_customer(client, b, "victim@example.com", plan="pro")
    async with database(client).session() as session:
        await session.execute(
            insert(UpstreamRoute).values(
                project_id=b.project_id,
                path_prefix="api",
                upstream_url=idp.url.rsplit("/", 1)[0] + "/",
                methods="GET",
                units=1,
            )
        )
    return a, b, victim["id"]


@pytest.mark.parametrize("warm", [True, False], ids=["warm-cache", "cold-cache"])
async def test_a_projects_own_idp_token_never_acts_in_another_project(
    make_client: ClientFactory, idp: JwksServer, warm: bool
) -> None:
    client = await make_client(allow_private_upstreams=True, caller_cache_seconds=60)
    a, b, victim = await two_projects(client, idp)
    # A token of A's IdP naming B's customer, with no publishable-key claim (no binding).
    token = idp.sign(idp.keys[0], claims(PROJECT_ISSUER, "project-a", victim))
    if warm:
        primed = await client.get(USAGE, headers={**a.publishable, "X-Clerk-Token": token})
        assert primed.status_code == 200, primed.text  # A's own user of that name
    as_b = {**b.publishable, "X-Clerk-Token": token}
    for response in (
        await client.get(USAGE, headers=as_b),
        await client.post(DATA, headers=as_b),
        await client.get(f"/gw/{b.project_id}/api/jwks.json", headers=as_b),
    ):
        assert_error(response, 401, "invalid_end_user_token")
    # B's customer spent nothing.
    own = await user_token(client, b, victim)
    usage = await client.get(USAGE, headers={**b.publishable, "X-Clerk-Token": own})
    assert usage.json()["usageCount"] == 0


async def test_forged_tokens_for_a_projects_own_idp_are_refused(
    make_client: ClientFactory, idp: JwksServer
) -> None:
    client = await make_client(allow_private_upstreams=True)
    a, _b, _victim = await two_projects(client, idp)
    rsa_key, ec_key = idp.keys
    good = claims(PROJECT_ISSUER, "project-a", "someone")
    header = {"alg": "RS256", "typ": "JWT", "kid": ec_key.kid}
    for why, token in {
        "RS256 claimed for the EC key": forged(header, good, b"x"),
        "HS256 keyed with the public key": forged(
            {**header, "alg": "HS256", "kid": rsa_key.kid}, good, public_pem(rsa_key)
        ),
        "alg none": forged({"alg": "none", "kid": rsa_key.kid}, good),
        "traversal kid": idp.sign(rsa_key, good, kid="../../../etc/passwd"),
        "wrong issuer": idp.sign(rsa_key, claims("https://evil.test", "project-a", "someone")),
        "wrong audience": idp.sign(rsa_key, claims(PROJECT_ISSUER, "project-b", "someone")),
        "garbage": "t7e3.t7e3.t7e3",
    }.items():
        response = await client.get(USAGE, headers={**a.publishable, "X-Clerk-Token": token})
        body = assert_error(response, 401, "invalid_end_user_token")
        assert "codec" not in body["message"], why


async def test_an_end_user_token_is_not_an_access_token(make_client: ClientFactory) -> None:
    client = await make_client(caller_cache_seconds=60)
    keys = await new_project(client)
    customer = await create_customer(client, keys, "mixed@example.com")
    token = await user_token(client, keys, customer["id"])
    ok = await client.get(USAGE, headers={**keys.publishable, "X-Clerk-Token": token})
    assert ok.status_code == 200, ok.text
    # The same token, now cached as an end-user token, sent as a bearer access token.
    assert_error(await client.get(ME, headers=bearer(token)), 401, "invalid_token")


async def test_access_and_external_tokens_are_not_end_user_tokens(
    make_client: ClientFactory, idp: JwksServer
) -> None:
    issuers = [{"issuer": ISSUER, "jwks_url": idp.url, "audience": AUDIENCE}]
    client = await make_client(jwt_issuers=issuers, caller_cache_seconds=60)
    keys = await new_project(client)
    user = await resolve(client, "gateway-user")
    access = (await token_pair(client, user))["access_token"]
    external = idp.sign(idp.keys[0], claims(ISSUER, AUDIENCE, "ext-user"))
    for token in (access, external):
        # Verified (and cached) as a bearer token, then offered as an end-user token.
        assert (await client.get(ME, headers=bearer(token))).status_code == 200
        response = await client.get(USAGE, headers={**keys.publishable, "X-Clerk-Token": token})
        assert_error(response, 401, "invalid_end_user_token")


# --- §6: the attack suite -----------------------------------------------------------------------


async def test_attacks_on_external_issuer_tokens(
    make_client: ClientFactory, idp: JwksServer
) -> None:
    issuers = [{"issuer": ISSUER, "jwks_url": idp.url, "audience": AUDIENCE}]
    client = await make_client(jwt_issuers=issuers, jwks_refetch_cooldown_seconds=0)
    rsa_key, ec_key = idp.keys
    good = claims(ISSUER, AUDIENCE, "mallory")
    now = int(time.time())
    rsa_header = {"alg": "RS256", "typ": "JWT", "kid": rsa_key.kid}
    cases: dict[str, str] = {
        "alg none": forged({"alg": "none", "kid": rsa_key.kid}, good),
        "HS256 keyed with the public key": forged(
            {**rsa_header, "alg": "HS256"}, good, public_pem(rsa_key)
        ),
        # RS256 claimed for the EC key's kid (no secret needed to try).
        "alg does not fit the key": forged({**rsa_header, "kid": ec_key.kid}, good, b"x"),
        "ES256 claimed for the RSA key": forged({**rsa_header, "alg": "ES256"}, good, b"x"),
        "wrong audience": idp.sign(rsa_key, claims(ISSUER, "someone-else", "mallory")),
        "unknown kid": idp.sign(new_key("rsa-9"), good),
        "traversal kid": idp.sign(rsa_key, good, kid="../../../etc/passwd"),
        "garbage": "t7e3.t7e3.t7e3",
    }
    for why, token in cases.items():
        response = await client.get(ME, headers=bearer(token))
        assert response.status_code == 401, (why, response.text)
        body = assert_error(response, 401, "invalid_token")
        assert "codec" not in body["message"], why
    expired = idp.sign(rsa_key, {**good, "iat": now - 1200, "exp": now - 600})
    assert_error(await client.get(ME, headers=bearer(expired)), 401, "token_expired")


async def test_attacks_on_our_own_access_tokens(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "victim")
    now = int(time.time())
    cases: dict[str, str] = {
        "alg none": forged({"alg": "none"}, own_claims(user)),
        "no issuer": jwt.encode(
            {k: v for k, v in own_claims(user).items() if k != "iss"}, JWT_SECRET, "HS256"
        ),
        "wrong issuer": jwt.encode(own_claims(user, iss="https://evil.test"), JWT_SECRET, "HS256"),
        "a kid that is not ours": jwt.encode(
            own_claims(user), JWT_SECRET, "HS256", headers={"kid": "../../keys/other"}
        ),
        "wrong secret": jwt.encode(
            own_claims(user), "not-the-secret-0123456789abcdefghijkl", "HS256"
        ),
        "garbage": "t7e3.t7e3.t7e3",
    }
    for why, token in cases.items():
        response = await client.get(ME, headers=bearer(token))
        body = assert_error(response, 401, "invalid_token")
        assert "codec" not in body["message"], why
    malformed = await client.get(ME, headers=bearer("t7e3.t7e3.t7e3"))
    assert "malformed token" in malformed.json()["message"]
    expired = jwt.encode(own_claims(user, iat=now - 1200, exp=now - 600), JWT_SECRET, "HS256")
    assert_error(await client.get(ME, headers=bearer(expired)), 401, "token_expired")
    # The tokens we issue pass every check above.
    access = (await token_pair(client, user))["access_token"]
    assert (await client.get(ME, headers=bearer(access))).json()["id"] == user


async def test_attacks_on_end_user_tokens(client: httpx.AsyncClient) -> None:
    a = await new_project(client, name="a")
    b = await new_project(client, name="b")
    customer = await create_customer(client, a, "eu@example.com")
    token = await user_token(client, a, customer["id"])
    header, payload, signature = token.split(".")
    claims_ = json.loads(base64.urlsafe_b64decode(payload + "=="))
    other_subject = b64(json.dumps({**claims_, "sub": "other"}).encode())
    cases: dict[str, tuple[int, str, str]] = {
        "alg none": (401, "invalid_end_user_token", forged({"alg": "none"}, claims_)),
        "tampered subject": (
            401,
            "invalid_end_user_token",
            f"{header}.{other_subject}.{signature}",
        ),
        "garbage": (401, "invalid_end_user_token", "t7e3.t7e3.t7e3"),
        "A's token with B's key": (403, "publishable_key_mismatch", token),
    }
    for why, (status, code, presented) in cases.items():
        for pk in (a.pk, b.pk) if why != "A's token with B's key" else (b.pk,):
            response = await client.get(
                USAGE, headers={"X-Publishable-Key": pk, "X-Clerk-Token": presented}
            )
            body = assert_error(response, status, code)
            assert "codec" not in body["message"], why
