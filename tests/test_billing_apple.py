"""Apple in-app purchases through HTTP, verified by the real SignedDataVerifier (test PKI)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from apple_pki import APP_APPLE_ID, BUNDLE_ID, ApplePKI, notification, now_ms, transaction
from support import ADMIN_KEY, SERVICE, ClientFactory, app_of, assert_error, ledger_rows, resolve
from tollhouse import wiring
from tollhouse.billing.apple.renewals import add_months
from tollhouse.billing.gateway.products import Catalogue
from tollhouse.cli import app as cli
from tollhouse.config import Settings

pytestmark = pytest.mark.anyio

PKI = ApplePKI()
BILLING_KEY = "test-billing-key-0123456789abcdefghijklmn"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
SIGNUP = 50
DAY_MS = 24 * 3600 * 1000


def apple_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "apple_bundle_id": BUNDLE_ID,
        "apple_app_id": APP_APPLE_ID,
        "apple_environment": "Sandbox",
        "apple_root_certificates": [PKI.root_base64],
        "billing_api_key": BILLING_KEY,
        **overrides,
    }


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client(**apple_settings())


def as_user(user: str) -> dict[str, str]:
    return {**SERVICE, "X-User-ID": user}


async def verify(client: httpx.AsyncClient, user: str, signed: str) -> httpx.Response:
    return await client.post(
        "/api/v1/billing/apple/verify", json={"signed_transaction": signed}, headers=as_user(user)
    )


async def notify(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    return await client.post("/webhook/apple", json={"signedPayload": PKI.sign(payload)})


async def status(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    response = await client.get("/api/v1/billing/status", headers=as_user(user))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def assert_audit_clean(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/credits/admin/audit", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True, response.json()


# --- verify -----------------------------------------------------------------------------------


async def test_verify_grants_a_pack_once(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "buyer")
    signed = PKI.sign(transaction("credits_100", "2000000001"))

    first = await verify(client, user, signed)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "granted": 100,
        "balance": SIGNUP + 100,
        "transaction_id": "2000000001",
        "product_id": "credits_100",
        "already_verified": False,
    }
    again = await verify(client, user, signed)
    assert again.status_code == 200, again.text
    assert again.json()["granted"] == 0
    assert again.json()["already_verified"] is True
    assert again.json()["balance"] == SIGNUP + 100

    [row] = await ledger_rows(client, "apple_iap")
    assert (row.amount, row.reference_id, row.idempotency_key) == (
        100,
        "2000000001",
        "grant:apple:2000000001",
    )
    body = await status(client, user)
    assert body["balance"] == SIGNUP + 100
    assert [p["type"] for p in body["recent_purchases"]] == ["apple_iap"]


async def test_quantity_multiplies_a_pack(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "bulk")
    response = await verify(client, user, PKI.sign(transaction("credits_100", quantity=3)))
    assert response.status_code == 200, response.text
    assert response.json()["granted"] == 300


async def test_ten_concurrent_verifies_grant_once(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "racer")
    signed = PKI.sign(transaction("credits_500", "2000000010"))

    responses = await asyncio.gather(*(verify(client, user, signed) for _ in range(10)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sum(r.json()["granted"] for r in responses) == 500
    assert sum(not r.json()["already_verified"] for r in responses) == 1
    assert len(await ledger_rows(client, "apple_iap")) == 1
    assert (await status(client, user))["balance"] == SIGNUP + 500
    await assert_audit_clean(client)


async def test_a_transaction_belongs_to_the_first_claimant(client: httpx.AsyncClient) -> None:
    owner = await resolve(client, "owner")
    other = await resolve(client, "other")
    signed = PKI.sign(transaction("credits_100", "2000000020"))
    assert (await verify(client, owner, signed)).status_code == 200

    assert_error(await verify(client, other, signed), 409, "transaction_already_claimed")
    assert (await status(client, other))["balance"] == SIGNUP
    assert len(await ledger_rows(client, "apple_iap")) == 1


@pytest.mark.parametrize(
    ("signed", "code"),
    [
        (PKI.sign(transaction("credits_100", bundle_id="com.other")), "apple_wrong_bundle_id"),
        (PKI.sign(transaction("credits_100", environment="Production")), "apple_wrong_environment"),
        (PKI.sign(transaction("credits_unknown")), "unknown_product"),
        (ApplePKI().sign(transaction("credits_100")), "apple_signature_invalid"),
        (ApplePKI(leaf_oid=False).sign(transaction("credits_100")), "apple_signature_invalid"),
        ("not-a-jws", "apple_signature_invalid"),
        (PKI.sign(transaction("credits_100", revocationDate=now_ms())), "transaction_revoked"),
        (PKI.sign(transaction("credits_100", transactionId="../etc")), "apple_transaction_invalid"),
        (PKI.sign(transaction("credits_100", quantity=1000)), "apple_transaction_invalid"),
    ],
    ids=[
        "wrong_bundle", "wrong_environment", "unknown_product", "untrusted_root",
        "leaf_without_apple_oid", "garbage", "revoked", "bad_transaction_id", "quantity",
    ],
)  # fmt: skip
async def test_bad_transactions_are_refused(
    client: httpx.AsyncClient, signed: str, code: str
) -> None:
    user = await resolve(client, "tester")
    assert_error(await verify(client, user, signed), 400, code)
    assert await ledger_rows(client, "apple_iap") == []


async def test_a_tampered_transaction_is_refused(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "tamperer")
    header, payload, signature = PKI.sign(transaction("credits_100")).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["productId"] = "credits_1500"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = await verify(client, user, f"{header}.{forged}.{signature}")
    assert_error(response, 400, "apple_signature_invalid")
    assert (await status(client, user))["balance"] == SIGNUP


async def test_verify_needs_a_user_and_a_bounded_body(client: httpx.AsyncClient) -> None:
    signed = PKI.sign(transaction("credits_100"))
    assert_error(
        await client.post("/api/v1/billing/apple/verify", json={"signed_transaction": signed}),
        401,
        "authentication_required",
    )
    user = await resolve(client, "big")
    assert_error(await verify(client, user, "x" * (16 * 1024 + 1)), 422, "validation_error")
    assert_error(await verify(client, user, ""), 422, "validation_error")


async def test_apple_not_configured_answers_503(make_client: ClientFactory) -> None:
    client = await make_client()
    user = await resolve(client, "early")
    response = await verify(client, user, PKI.sign(transaction("credits_100")))
    assert_error(response, 503, "apple_not_configured")
    payload = notification("DID_RENEW", PKI.sign(transaction("pro_monthly")))
    assert_error(await notify(client, payload), 503, "apple_not_configured")


async def test_production_needs_the_app_id(make_client: ClientFactory) -> None:
    client = await make_client(**apple_settings(apple_environment="Production", apple_app_id=None))
    user = await resolve(client, "prod")
    body = assert_error(
        await verify(client, user, PKI.sign(transaction("credits_100"))),
        503,
        "apple_not_configured",
    )
    assert "APPLE_APP_ID" in body["message"]


def test_unsigned_environments_are_refused_in_production() -> None:
    for environment in ("Xcode", "LocalTesting"):
        with pytest.raises(ValidationError, match="skips verification"):
            Settings(_env_file=None, tollhouse_env="production", apple_environment=environment)
    Settings(_env_file=None, tollhouse_env="test", apple_environment="Xcode")


async def test_roots_can_be_files(make_client: ClientFactory, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = tmp_path / "root.pem"
    pem.write_bytes(PKI.root.public_bytes(Encoding.PEM))
    client = await make_client(**apple_settings(apple_root_certificates=[str(pem)]))
    user = await resolve(client, "file")
    response = await verify(client, user, PKI.sign(transaction("credits_100")))
    assert response.status_code == 200, response.text


# --- subscriptions ------------------------------------------------------------------------------


def subscription(
    product: str, transaction_id: str, *, days_ago: int = 0, days: int = 30, **fields: Any
) -> dict[str, Any]:
    start = now_ms() - days_ago * DAY_MS
    return transaction(
        product, transaction_id, purchase_ms=start, expires_ms=start + days * DAY_MS, **fields
    )


async def test_a_subscription_grants_its_first_month(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "subscriber")
    response = await verify(client, user, PKI.sign(subscription("pro_monthly", "3000000001")))
    assert response.status_code == 200, response.text
    assert response.json()["granted"] == 1000
    body = await status(client, user)
    assert body["subscription"]["provider"] == "apple"
    assert body["subscription"]["product_id"] == "pro_monthly"
    assert body["subscription"]["credits_per_month"] == 1000
    assert [r.idempotency_key for r in await ledger_rows(client, "subscription_grant")] == [
        "grant:apple:3000000001"
    ]


async def test_renewal_notifications_grant_once(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "renewer")
    first = subscription("pro_monthly", "3000000100", days_ago=30)
    assert (await verify(client, user, PKI.sign(first))).status_code == 200

    renewal = PKI.sign(
        subscription("pro_monthly", "3000000101", original_transaction_id="3000000100")
    )
    payload = notification("DID_RENEW", renewal, notification_uuid="uuid-renew-1")
    responses = await asyncio.gather(*(notify(client, payload) for _ in range(5)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    outcomes = sorted(r.json().get("outcome", "idempotent") for r in responses)
    assert outcomes == ["granted"] + ["idempotent"] * 4
    # Another notification about the same transaction (Apple resends under a new UUID).
    resent = await notify(client, notification("DID_RENEW", renewal))
    assert resent.json()["outcome"] == "already_granted"

    grants = await ledger_rows(client, "subscription_grant")
    keys = [r.idempotency_key for r in grants]
    assert keys == ["grant:apple:3000000100", "grant:apple:3000000101"]
    assert (await status(client, user))["balance"] == SIGNUP + 2000
    # The app verifying the renewal too changes nothing.
    again = await verify(client, user, renewal)
    assert again.json()["granted"] == 0
    await assert_audit_clean(client)


async def test_notifications_nobody_can_use_are_acknowledged(client: httpx.AsyncClient) -> None:
    unclaimed = PKI.sign(subscription("pro_monthly", "3000000200"))
    response = await notify(client, notification("SUBSCRIBED", unclaimed))
    assert response.json() == {"received": True, "outcome": "owner_unknown"}
    unknown = PKI.sign(subscription("gold_monthly", "3000000201"))
    response = await notify(client, notification("DID_RENEW", unknown))
    assert response.json() == {"received": True, "outcome": "unknown_product"}
    response = await notify(client, notification("TEST", unclaimed))
    assert response.json() == {"received": True, "outcome": "ignored"}


async def test_app_account_token_names_the_owner(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "token-owner")
    signed = PKI.sign(subscription("pro_monthly", "3000000300", appAccountToken=user))
    response = await notify(client, notification("SUBSCRIBED", signed))
    assert response.json()["outcome"] == "granted"
    assert (await status(client, user))["balance"] == SIGNUP + 1000


@pytest.mark.parametrize(
    "payload",
    [
        notification("DID_RENEW", PKI.sign(transaction("pro_monthly")), bundle_id="com.other"),
        {"notificationType": "DID_RENEW"},
    ],
    ids=["wrong_bundle", "not_signed_by_apple"],
)
async def test_bad_notifications_are_refused(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    if "data" in payload:
        response = await notify(client, payload)
        assert_error(response, 400, "apple_wrong_bundle_id")
    else:
        response = await client.post(
            "/webhook/apple", json={"signedPayload": ApplePKI().sign(payload)}
        )
        assert_error(response, 400, "apple_signature_invalid")
    assert_error(await client.post("/webhook/apple", json={}), 422, "validation_error")


# --- refunds ------------------------------------------------------------------------------------


async def test_refund_after_spending_takes_what_it_can(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await resolve(client, "refunder")
    signed = PKI.sign(transaction("credits_100", "4000000001"))
    assert (await verify(client, user, signed)).json()["balance"] == SIGNUP + 100
    spent = await client.post(
        "/internal/credits/spend",
        json={"user_id": user, "cost": 140},
        headers={"X-Service-Key": BILLING_KEY},
    )
    assert spent.status_code == 200, spent.text  # balance 10

    payload = notification("REFUND", signed, notification_uuid="uuid-refund-1")
    first = await notify(client, payload)
    assert first.json() == {"received": True, "outcome": "partially_taken_back"}
    assert (await notify(client, payload)).json() == {"received": True, "idempotent": True}
    # The same refund announced again under another UUID takes nothing more.
    assert (await notify(client, notification("REFUND", signed))).json()["outcome"] == (
        "nothing_to_take_back"
    )

    body = await status(client, user)
    assert body["balance"] == 0
    assert body["flag"]["unrecovered_credits"] == 90
    assert "4000000001" in body["flag"]["reason"]
    [refund] = [r for r in await ledger_rows(client, "refund") if r.amount < 0]
    assert (refund.amount, refund.balance_after, refund.reference_id) == (-10, 0, "4000000001")
    await assert_audit_clean(client)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLHOUSE_DATA_DIR", str(tmp_path / "data"))
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["ledger", "verify"])
    assert result.exit_code == 0, result.output

    # The app presenting the refunded transaction again gets nothing.
    assert (await verify(client, user, signed)).json()["granted"] == 0
    assert (await status(client, user))["balance"] == 0


async def test_refund_with_enough_balance_takes_everything(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "rich")
    signed = PKI.sign(transaction("credits_100", "4000000010"))
    await verify(client, user, signed)
    response = await notify(client, notification("REFUND", signed))
    assert response.json()["outcome"] == "taken_back"
    body = await status(client, user)
    assert (body["balance"], body["flag"]) == (SIGNUP, None)
    await assert_audit_clean(client)


async def test_a_refund_before_the_claim_blocks_it(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "late")
    signed = PKI.sign(transaction("credits_100", "4000000020"))
    response = await notify(client, notification("REFUND", signed))
    assert response.json()["outcome"] == "nothing_to_take_back"
    assert_error(await verify(client, user, signed), 400, "transaction_revoked")
    assert (await status(client, user))["balance"] == SIGNUP


# --- yearly plans grant monthly -----------------------------------------------------------------


async def grant_months(client: httpx.AsyncClient) -> int:
    app = app_of(client)
    catalogue = Catalogue.from_settings(app.state.identity.settings)
    return await wiring.grant_subscription_months(app.state.database, catalogue)


async def test_a_yearly_plan_grants_every_month(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "yearly")
    purchased = datetime.now(UTC) - timedelta(days=95)
    start_ms = int(purchased.timestamp() * 1000)
    signed = PKI.sign(
        transaction(
            "pro_yearly", "5000000001", purchase_ms=start_ms, expires_ms=start_ms + 365 * DAY_MS
        )
    )
    assert (await verify(client, user, signed)).json()["granted"] == 1000

    # 95 days in: months 2, 3 and 4 have started.
    results = await asyncio.gather(grant_months(client), grant_months(client))
    assert sorted(results) == [0, 3]
    assert await grant_months(client) == 0
    keys = [r.idempotency_key for r in await ledger_rows(client, "subscription_grant")]
    expected = [f"apple:5000000001:{add_months(purchased, month):%Y-%m}" for month in (1, 2, 3)]
    assert keys == ["grant:apple:5000000001", *expected]
    assert (await status(client, user))["balance"] == SIGNUP + 4000

    # A refund takes back all four months and stops the rest.
    response = await notify(client, notification("REFUND", signed))
    assert response.json()["outcome"] == "taken_back"
    assert (await status(client, user))["balance"] == SIGNUP
    assert await grant_months(client) == 0
    await assert_audit_clean(client)


def test_add_months_clamps_to_the_month_end() -> None:
    start = datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert add_months(start, 1) == datetime(2025, 2, 28, 12, tzinfo=UTC)
    assert add_months(start, 13) == datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert add_months(start, 11) == datetime(2025, 12, 31, 12, tzinfo=UTC)
