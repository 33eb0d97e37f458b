"""The credit ledger through HTTP: balances, history, grants, spends, holds, idempotency, audit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi import Request
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from support import (
    ADMIN_KEY,
    SERVICE,
    ClientFactory,
    app_of,
    assert_error,
    resolve,
)
from tollhouse import wiring
from tollhouse.cli import app as cli
from tollhouse.ledger.charging import Charge, Cost
from tollhouse.ledger.costs import DEFAULT_COSTS, generation_cost_key
from tollhouse.ledger.models import CreditAccount, CreditHold, CreditTransaction

pytestmark = pytest.mark.anyio

BILLING_KEY = "test-billing-key-0123456789abcdefghijklmn"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
BILLING = {"X-Service-Key": BILLING_KEY}


async def ledger_client(make_client: ClientFactory, **overrides: Any) -> httpx.AsyncClient:
    return await make_client(billing_api_key=BILLING_KEY, **overrides)


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await ledger_client(make_client)


def as_user(user: str) -> dict[str, str]:
    return {**SERVICE, "X-User-ID": user}


async def balance(client: httpx.AsyncClient, user: str) -> int:
    response = await client.get("/api/v1/credits/balance", headers=as_user(user))
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


async def transactions(client: httpx.AsyncClient) -> list[CreditTransaction]:
    async with app_of(client).state.database.session() as session:
        return list(await session.scalars(select(CreditTransaction).order_by(CreditTransaction.id)))


async def audit(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/v1/credits/admin/audit", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def grant(
    client: httpx.AsyncClient, user: str, amount: int, **headers: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/credits/admin/grant",
        json={"user_id": user, "amount": amount},
        headers={**ADMIN, **headers},
    )


async def spend(client: httpx.AsyncClient, user: str, cost: int, **headers: str) -> httpx.Response:
    return await client.post(
        "/internal/credits/spend",
        json={"user_id": user, "cost": cost},
        headers={**BILLING, **headers},
    )


async def user_with(client: httpx.AsyncClient, credits: int, external_id: str = "payer") -> str:
    """A user whose balance is exactly `credits` (after the signup bonus is spent down)."""
    user = await resolve(client, external_id)
    current = await balance(client, user)
    if credits > current:
        assert (await grant(client, user, credits - current)).status_code == 200
    elif credits < current:
        assert (await spend(client, user, current - credits)).status_code == 200
    assert await balance(client, user) == credits
    return user


# --- signup, balance, history, costs --------------------------------------------------------


async def test_a_new_user_gets_a_logged_welcome_bonus(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "newcomer")
    body = (await client.get("/api/v1/credits/balance", headers=as_user(user))).json()
    assert body == {"balance": 50, "lifetime_earned": 50, "lifetime_spent": 0}
    history = (await client.get("/api/v1/credits/history", headers=as_user(user))).json()
    assert [(h["amount"], h["balance_after"], h["type"], h["description"]) for h in history] == [
        (50, 50, "signup_bonus", "Welcome bonus")
    ]
    await resolve(client, "newcomer")  # a second resolve is not a second bonus
    assert await balance(client, user) == 50


async def test_signup_credits_are_configurable(make_client: ClientFactory) -> None:
    client = await ledger_client(make_client, signup_credits=0)
    user = await resolve(client, "frugal")
    assert await balance(client, user) == 0
    assert await transactions(client) == []


async def test_history_is_newest_first_and_paged(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    for amount in (1, 2, 3):
        await grant(client, user, amount)
    page = (await client.get("/api/v1/credits/history?limit=2", headers=as_user(user))).json()
    assert [h["amount"] for h in page] == [3, 2]
    rest = (
        await client.get("/api/v1/credits/history?limit=2&offset=2", headers=as_user(user))
    ).json()
    assert [h["amount"] for h in rest] == [1, 50]
    for bad in ("limit=0", "limit=101", "offset=-1", "limit=abc"):
        response = await client.get(f"/api/v1/credits/history?{bad}", headers=as_user(user))
        assert_error(response, 422, "validation_error")


async def test_credit_routes_need_a_user(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/credits/balance"), 401, "authentication_required")
    assert_error(
        await client.get("/api/v1/credits/history", headers=SERVICE), 401, "authentication_required"
    )


async def test_costs_are_the_contract_table_with_overrides(make_client: ClientFactory) -> None:
    client = await ledger_client(make_client, credit_costs={"chat": 3})
    costs = (await client.get("/api/v1/credits/costs")).json()["costs"]
    assert costs == {**DEFAULT_COSTS, "chat": 3}
    # The contract's 18 keys, plus the prices of dialog and survey (which it left free) and
    # one /api/v1/eval comparison.
    assert len(costs) == 21
    assert (costs["dialog"], costs["survey"], costs["eval_compare"]) == (2, 3, 10)
    changed = await client.put(
        "/api/v1/credits/admin/costs", json={"costs": {"generate_hd": 12}}, headers=ADMIN
    )
    assert changed.status_code == 200
    assert (await client.get("/api/v1/credits/costs")).json()["costs"]["generate_hd"] == 12
    unknown = await client.put(
        "/api/v1/credits/admin/costs", json={"costs": {"teleport": 1}}, headers=ADMIN
    )
    assert_error(unknown, 422, "unknown_cost_key")
    negative = await client.put(
        "/api/v1/credits/admin/costs", json={"costs": {"chat": -1}}, headers=ADMIN
    )
    assert_error(negative, 422, "validation_error")


def test_each_preset_pays_its_own_price() -> None:
    assert generation_cost_key("hd") == "generate_hd"
    assert generation_cost_key(None) == "generate_balanced"
    assert generation_cost_key("frontier") == "generate_balanced"


# --- admin grant -------------------------------------------------------------------------


async def test_admin_grant(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    response = await grant(client, user, 25)
    assert response.json() == {"balance": 75, "granted": 25}
    typed = await client.post(
        "/api/v1/credits/admin/grant",
        json={
            "user_id": "user-1",
            "amount": 5,
            "transaction_type": "apple_iap",
            "description": "IAP",
        },
        headers=ADMIN,
    )
    assert typed.json() == {"balance": 80, "granted": 5}
    rows = await transactions(client)
    assert [(r.type, r.amount, r.balance_after, r.description) for r in rows[1:]] == [
        ("admin_grant", 25, 75, "Manual top-up"),
        ("apple_iap", 5, 80, "IAP"),
    ]
    # flash-contract §8.4 #9: a type that is not a grant's is written as admin_grant.
    for odd in ("free_money", "generation"):
        lenient = await client.post(
            "/api/v1/credits/admin/grant",
            json={"user_id": "user-1", "amount": 1, "transaction_type": odd},
            headers=ADMIN,
        )
        assert lenient.status_code == 200, lenient.text
    assert [r.type for r in (await transactions(client))[-2:]] == ["admin_grant", "admin_grant"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"user_id": "user-1", "amount": 0}, 422, "validation_error"),
        ({"user_id": "user-1", "amount": -5}, 422, "validation_error"),
        ({"user_id": "user-1", "amount": 1.5}, 422, "validation_error"),
        ({"user_id": "user-1", "amount": "10"}, 422, "validation_error"),
        ({"user_id": "user-1", "amount": True}, 422, "validation_error"),
        ({"user_id": "user-1", "amount": 2**31}, 422, "validation_error"),
        ({"user_id": "user-1", "amount": 2**70}, 422, "validation_error"),
        ({"user_id": "user-1"}, 422, "validation_error"),
        ({"amount": 5}, 422, "validation_error"),
        ({"user_id": "nobody", "amount": 5}, 404, "user_not_found"),
        ({"user_id": "00000000-0000-4000-8000-000000000000", "amount": 5}, 404, "user_not_found"),
    ],
)
async def test_bad_grants_are_refused_and_write_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    user = await resolve(client)
    before = await transactions(client)
    response = await client.post("/api/v1/credits/admin/grant", json=body, headers=ADMIN)
    assert_error(response, status, code)
    assert len(await transactions(client)) == len(before)
    assert await balance(client, user) == 50


async def test_admin_grant_needs_the_admin_key(make_client: ClientFactory) -> None:
    client = await ledger_client(make_client)
    user = await resolve(client)
    body = {"user_id": user, "amount": 5}
    assert_error(
        await client.post("/api/v1/credits/admin/grant", json=body), 403, "admin_key_required"
    )
    wrong = await client.post(
        "/api/v1/credits/admin/grant", json=body, headers={"X-Admin-Key": "x"}
    )
    assert_error(wrong, 403, "invalid_admin_key")
    as_service = await client.post("/api/v1/credits/admin/grant", json=body, headers=SERVICE)
    assert_error(as_service, 403, "admin_key_required")
    disabled = await ledger_client(make_client, admin_api_key=None)
    off = await disabled.post("/api/v1/credits/admin/grant", json=body, headers=ADMIN)
    assert_error(off, 403, "admin_disabled")
    assert await balance(client, user) == 50


# --- internal credits API ----------------------------------------------------------------


async def test_internal_grant_spend_and_check(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "billing-user")
    granted = await client.post(
        "/internal/credits/grant",
        json={"user_id": "billing-user", "amount": 100, "transaction_type": "stripe_purchase"},
        headers=BILLING,
    )
    assert granted.status_code == 200
    assert granted.json()["success"] is True
    assert granted.json()["balance_after"] == 150
    spent = await spend(client, user, 40)
    assert spent.json()["success"] is True
    assert spent.json()["balance_after"] == 110
    assert isinstance(spent.json()["transaction_id"], int)
    check = await client.get(f"/internal/credits/check?user_id={user}&cost=111", headers=BILLING)
    assert check.json() == {"sufficient": False, "balance": 110}
    check = await client.get(f"/internal/credits/check?user_id={user}&cost=110", headers=BILLING)
    assert check.json() == {"sufficient": True, "balance": 110}


async def test_internal_spend_beyond_the_balance_is_a_402(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    body = assert_error(await spend(client, user, 51), 402, "insufficient_credits")
    assert body["message"] == "Insufficient credits. This operation costs 51 credits."
    assert body["detail"] == {"balance": 50, "cost": 51}
    assert await balance(client, user) == 50


@pytest.mark.parametrize(
    "headers", [{}, SERVICE, {"X-Service-Key": "wrong"}, {"X-Admin-Key": ADMIN_KEY}]
)
async def test_internal_api_needs_the_billing_key(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    user = await resolve(client)
    response = await client.post(
        "/internal/credits/spend", json={"user_id": user, "cost": 1}, headers=headers
    )
    assert response.status_code == 403
    assert response.json()["error"] in ("invalid_service_key", "service_key_required")
    assert await balance(client, user) == 50


@pytest.mark.parametrize(
    "body",
    [
        {"cost": 1},
        {"user_id": "user-1", "cost": 0},
        {"user_id": "user-1", "cost": -3},
        {"user_id": "user-1", "cost": 2.5},
        {"user_id": "user-1", "cost": 2**31},
        {"user_id": "user-1", "cost": 1, "transaction_type": "refund"},
    ],
)
async def test_bad_internal_spends_are_refused(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    user = await resolve(client)
    assert_error(
        await client.post("/internal/credits/spend", json=body, headers=BILLING),
        422,
        "validation_error",
    )
    unknown = await client.post(
        "/internal/credits/spend", json={"user_id": "ghost", "cost": 1}, headers=BILLING
    )
    assert_error(unknown, 404, "user_not_found")
    assert await balance(client, user) == 50


# --- idempotency -------------------------------------------------------------------------


async def test_same_key_same_body_replays_the_first_answer(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    first = await grant(client, user, 10, **{"Idempotency-Key": "grant-1"})
    again = await grant(client, user, 10, **{"Idempotency-Key": "grant-1"})
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert "idempotency-replayed" not in first.headers
    assert await balance(client, user) == 60
    different = await grant(client, user, 11, **{"Idempotency-Key": "grant-1"})
    assert_error(different, 409, "idempotency_key_reused")
    invalid = await grant(client, user, 10, **{"Idempotency-Key": "x" * 201})
    assert_error(invalid, 400, "invalid_idempotency_key")
    assert await balance(client, user) == 60


async def test_a_failed_request_does_not_burn_its_key(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    refused = await spend(client, user, 80, **{"Idempotency-Key": "spend-1"})
    assert refused.status_code == 402
    await grant(client, user, 30)
    retried = await spend(client, user, 80, **{"Idempotency-Key": "spend-1"})
    assert retried.status_code == 200
    assert retried.json()["balance_after"] == 0


async def test_one_key_on_a_grant_and_a_spend_are_two_operations(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    await grant(client, user, 10, **{"Idempotency-Key": "shared"})
    spent = await spend(client, user, 5, **{"Idempotency-Key": "shared"})
    assert spent.json()["balance_after"] == 55


async def test_fifty_concurrent_grants_with_one_key_make_one_row(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    responses = await asyncio.gather(
        *(grant(client, user, 7, **{"Idempotency-Key": "burst"}) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["balance"] for r in responses} == {57}
    grants = [t for t in await transactions(client) if t.type == "admin_grant"]
    assert len(grants) == 1
    assert await balance(client, user) == 57


# --- concurrency -------------------------------------------------------------------------


async def test_two_hundred_concurrent_spends_against_a_hundred(make_client: ClientFactory) -> None:
    clients = [
        await ledger_client(make_client, database_pool_size=5, database_max_overflow=0)
        for _ in range(4)
    ]
    user = await user_with(clients[0], 100)
    responses = await asyncio.gather(*(spend(clients[n % 4], user, 1) for n in range(200)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100
    assert statuses.count(402) == 100
    assert await balance(clients[0], user) == 0
    spends = [t for t in await transactions(clients[0]) if t.type == "generation"]
    assert len(spends) == 100
    assert sorted(t.balance_after for t in spends) == list(range(100))
    report = await audit(clients[0])
    assert report["ok"] is True


# --- the log is append-only, and the audit notices tampering ------------------------------


async def test_the_transaction_log_refuses_update_and_delete(client: httpx.AsyncClient) -> None:
    await resolve(client)
    database = app_of(client).state.database
    for statement in (
        "UPDATE credit_transactions SET amount = 5000",
        "DELETE FROM credit_transactions",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.session() as session:
                await session.execute(text(statement))
    assert len(await transactions(client)) == 1


async def test_audit_and_verify_report_a_tampered_balance(
    client: httpx.AsyncClient, database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await resolve(client)
    await grant(client, user, 10)
    assert (await audit(client))["ok"] is True
    async with app_of(client).state.database.session() as session:
        await session.execute(update(CreditAccount).values(balance=CreditAccount.balance + 5))
    report = await audit(client)
    assert report["ok"] is False
    [mismatch] = report["mismatches"]
    assert mismatch["user_id"] == user
    assert (mismatch["problem"], mismatch["expected"], mismatch["actual"]) == (
        "balance_differs_from_log",
        60,
        65,
    )

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLHOUSE_DATA_DIR", str(tmp_path / "data"))
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["ledger", "verify"])
    assert result.exit_code == 1, result.output
    assert "balance_differs_from_log" in result.output


async def test_verify_passes_on_a_clean_ledger(
    client: httpx.AsyncClient, database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await resolve(client)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLHOUSE_DATA_DIR", str(tmp_path / "data"))
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "every balance matches its log" in result.output


# --- holds through the charging dependency -----------------------------------------------


async def _preset_cost(request: Request) -> str:
    body = json.loads(await request.body() or b"{}")
    return generation_cost_key(body.get("preset"))


def install_paid_routes(client: httpx.AsyncClient) -> dict[str, Charge]:
    """Routes priced like the generation routes that later issues build on this dependency."""
    app = app_of(client)
    kept: dict[str, Charge] = {}
    priced = Cost(_preset_cost, "generation")

    @app.post("/test/generate")
    async def generate(request: Request, charge: Charge = priced) -> dict[str, Any]:
        body = await request.json()
        if body.get("fail"):
            raise RuntimeError("the pipeline fell over")
        if body.get("defer"):
            kept["deferred"] = charge.defer()
        return {"charged": charge.amount}

    return kept


async def test_a_successful_call_is_charged_once(client: httpx.AsyncClient) -> None:
    install_paid_routes(client)
    user = await user_with(client, 20)
    response = await client.post("/test/generate", json={"preset": "hd"}, headers=as_user(user))
    assert response.json() == {"charged": 10}
    assert await balance(client, user) == 10
    async with app_of(client).state.database.session() as session:
        [held] = await session.scalars(select(CreditHold))
    assert held.status == "captured"
    assert (await audit(client))["ok"] is True


async def test_a_failed_call_is_refunded_in_the_log(client: httpx.AsyncClient) -> None:
    install_paid_routes(client)
    user = await user_with(client, 20)
    response = await client.post(
        "/test/generate", json={"preset": "hd", "fail": True}, headers=as_user(user)
    )
    assert_error(response, 500, "internal_error")
    assert await balance(client, user) == 20
    rows = (await transactions(client))[-2:]
    assert [(r.type, r.amount) for r in rows] == [("generation", -10), ("refund", 10)]
    assert (await audit(client))["ok"] is True


async def test_short_balance_is_a_402_before_the_handler(client: httpx.AsyncClient) -> None:
    install_paid_routes(client)
    user = await user_with(client, 7)
    response = await client.post("/test/generate", json={"preset": "hd"}, headers=as_user(user))
    body = assert_error(response, 402, "insufficient_credits")
    assert body["detail"] == {"balance": 7, "cost": 10}
    assert await balance(client, user) == 7
    cheaper = await client.post(
        "/test/generate", json={"preset": "balanced"}, headers=as_user(user)
    )
    assert cheaper.json() == {"charged": 5}


async def test_unmetered_callers_pass_without_a_hold(client: httpx.AsyncClient) -> None:
    install_paid_routes(client)
    before = len(await transactions(client))
    system = await client.post("/test/generate", json={}, headers=SERVICE)
    assert system.json() == {"charged": 0}
    assert len(await transactions(client)) == before


async def test_sweeper_releases_an_abandoned_hold_and_settling_is_idempotent(
    client: httpx.AsyncClient,
) -> None:
    kept = install_paid_routes(client)
    user = await user_with(client, 20)
    await client.post("/test/generate", json={"defer": True}, headers=as_user(user))
    charge = kept["deferred"]
    assert await balance(client, user) == 15
    database = app_of(client).state.database
    assert await wiring.sweep_expired_holds(database) == 0  # not expired yet
    async with database.session() as session:
        await session.execute(update(CreditHold).values(expires_at=func.current_timestamp()))
    await asyncio.sleep(0.01)
    assert await wiring.sweep_expired_holds(database) == 1
    assert await balance(client, user) == 20
    assert await charge.capture() is False
    assert await charge.release() is False
    assert await balance(client, user) == 20
    assert (await audit(client))["ok"] is True


async def test_capture_then_release_is_a_no_op(client: httpx.AsyncClient) -> None:
    kept = install_paid_routes(client)
    user = await user_with(client, 20)
    await client.post("/test/generate", json={"defer": True}, headers=as_user(user))
    charge = kept["deferred"]
    assert await charge.capture() is True
    assert await charge.release() is False
    assert await charge.capture() is False
    assert await balance(client, user) == 15


async def test_the_background_sweeper_runs_in_the_app(make_client: ClientFactory) -> None:
    client = await ledger_client(make_client, hold_sweep_interval_seconds=0.05, hold_ttl_seconds=1)
    install_paid_routes(client)
    user = await user_with(client, 20)
    await client.post("/test/generate", json={"defer": True}, headers=as_user(user))
    assert await balance(client, user) == 15
    for _ in range(400):  # the hold lives 1 s; a loaded machine may take far longer to sweep
        await asyncio.sleep(0.05)
        if await balance(client, user) == 20:
            break
    assert await balance(client, user) == 20


async def test_export_includes_credit_history(client: httpx.AsyncClient) -> None:
    user = await resolve(client)
    await grant(client, user, 5)
    export = (await client.get("/api/v1/users/me/export", headers=as_user(user))).json()
    assert [(h["type"], h["amount"]) for h in export["credit_history"]] == [
        ("signup_bonus", 50),
        ("admin_grant", 5),
    ]
