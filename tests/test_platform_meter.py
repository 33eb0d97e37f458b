"""The daily platform meter job against the local Stripe peer: one meter event per paying
platform with its live end-user count, a per-day identifier (so reruns dedupe at Stripe),
nothing while the feature is off, and one platform's failure not stopping the others."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from stripe_peer import StripePeer
from support import ClientFactory, app_of
from test_billing_stripe import API, signup, stripe_settings
from test_platform_plan import _operator_prices
from tollhouse import wiring
from tollhouse.billing import platform_plan
from tollhouse.billing.stripe.client import StripeGateway
from tollhouse.billing.stripe.errors import StripeFailure
from tollhouse.config import Settings
from tollhouse.kit.queue import InProcessQueue
from tollhouse.tenancy.models import Platform, Project

pytestmark = pytest.mark.anyio

METER = "/v1/billing/meter_events"
NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


async def _platform(
    client: httpx.AsyncClient, email: str, *, live_users: int = 0, test_users: int = 0
) -> str:
    """A developer with a live and a test project and end users in each; the platform id."""
    auth = await signup(client, email)
    keys: dict[str, str] = {}
    platform_id = ""
    for mode in ("live", "test"):
        created = await client.post(
            f"{API}/projects",
            json={"name": f"Acme {mode}", "type": "saas", "mode": mode},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        keys[mode] = created.json()["secret_key"]
        project_id = created.json()["project"]["id"]
    async with app_of(client).state.database.session() as session:
        platform_id = str(
            await session.scalar(select(Project.platform_id).where(Project.id == project_id))
        )
    for mode, count in (("live", live_users), ("test", test_users)):
        for n in range(count):
            made = await client.post(
                "/api/customers",
                json={"email": f"{mode}{n}.{email}"},
                headers={"Authorization": f"Bearer {keys[mode]}"},
            )
            assert made.status_code == 201, made.text
    return platform_id


async def _set(client: httpx.AsyncClient, platform_id: str, **values: Any) -> None:
    async with app_of(client).state.database.session() as session:
        await session.execute(update(Platform).values(**values).where(Platform.id == platform_id))


async def _report(client: httpx.AsyncClient, gateway: StripeGateway | None = None) -> int:
    app = app_of(client)
    settings: Settings = app.state.identity.settings
    async with app.state.database.session() as session:
        return await platform_plan.report_usage(session, gateway or app.state.stripe, settings, NOW)


@pytest.fixture
async def client(make_client: ClientFactory, stripe_peer: StripePeer) -> httpx.AsyncClient:
    settings = {
        **stripe_settings(stripe_peer),
        **_operator_prices(stripe_peer),
        "platform_stripe_mode": "test",
        "platform_meter_event_name": "live_end_users",
    }
    return await make_client(**settings)


async def _two_platforms(client: httpx.AsyncClient) -> tuple[str, str]:
    """One active platform (3 live + 1 test end users), one canceled (2 live)."""
    active = await _platform(client, "a@example.com", live_users=3, test_users=1)
    canceled = await _platform(client, "b@example.com", live_users=2)
    await _set(client, active, plan_status="active", stripe_customer_id="cus_active")
    await _set(client, canceled, plan_status="canceled", stripe_customer_id="cus_canceled")
    return active, canceled


async def test_reports_live_end_users_of_paying_platforms_only(
    client: httpx.AsyncClient, stripe_peer: StripePeer
) -> None:
    active, _ = await _two_platforms(client)
    assert await _report(client) == 1
    (sent,) = stripe_peer.posted(METER)
    assert sent.account is None  # no Stripe-Account: the operator's own account
    assert sent.api_key == "sk_test_operator"
    assert sent.form == {
        "event_name": "live_end_users",
        "payload": {"stripe_customer_id": "cus_active", "value": "3"},
        "identifier": f"{active}:2026-03-14",
        "timestamp": str(int(NOW.timestamp())),
    }


async def test_trialing_is_reported_and_no_customer_is_skipped(
    client: httpx.AsyncClient, stripe_peer: StripePeer
) -> None:
    trialing = await _platform(client, "a@example.com", live_users=1)
    no_customer = await _platform(client, "b@example.com", live_users=1)
    await _set(client, trialing, plan_status="trialing", stripe_customer_id="cus_trial")
    await _set(client, no_customer, plan_status="active")
    assert await _report(client) == 1
    (sent,) = stripe_peer.posted(METER)
    assert sent.form["payload"] == {"stripe_customer_id": "cus_trial", "value": "1"}


async def test_a_rerun_the_same_day_sends_the_same_identifier(
    client: httpx.AsyncClient, stripe_peer: StripePeer
) -> None:
    active, _ = await _two_platforms(client)
    assert await _report(client) == 1
    assert await _report(client) == 1
    first, second = stripe_peer.posted(METER)
    assert first.form["identifier"] == second.form["identifier"] == f"{active}:2026-03-14"


async def test_feature_off_sends_nothing(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> None:
    client = await make_client(**stripe_settings(stripe_peer), platform_stripe_mode="test")
    await _two_platforms(client)
    assert await _report(client) == 0
    assert not stripe_peer.posted(METER)


async def test_one_platforms_failure_does_not_stop_the_others(
    client: httpx.AsyncClient, stripe_peer: StripePeer
) -> None:
    first = await _platform(client, "a@example.com", live_users=1)
    second = await _platform(client, "b@example.com", live_users=2)
    await _set(client, first, plan_status="active", stripe_customer_id="cus_broken")
    await _set(client, second, plan_status="active", stripe_customer_id="cus_fine")
    real: StripeGateway = app_of(client).state.stripe

    class Flaky(StripeGateway):
        async def create_meter_event(self, **kwargs: Any) -> None:
            if kwargs["customer_id"] == "cus_broken":
                raise StripeFailure("No such customer: 'cus_broken'")
            await real.create_meter_event(**kwargs)

    flaky = Flaky(real.settings)
    try:
        assert await _report(client, flaky) == 1
    finally:
        await flaky.close()
    (sent,) = stripe_peer.posted(METER)
    assert sent.form["payload"] == {"stripe_customer_id": "cus_fine", "value": "2"}


async def test_the_job_runs_only_when_the_plan_is_offered() -> None:
    def names(**values: Any) -> list[str]:
        settings = Settings(_env_file=None, **values)
        queue = InProcessQueue()
        wiring.periodic_jobs(queue, settings, database=None)  # type: ignore[arg-type]
        return queue.periodic_names

    assert "report_platform_usage" in names(platform_price_id="price_1")
    assert "report_platform_usage" not in names()
