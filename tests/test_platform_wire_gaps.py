"""The wire gaps `@dream-api/sdk` hit, with the SDK's request shapes: relative success and
cancel URLs against an allowed Origin, prices made when Stripe gets connected, the SDK's
field names beside the original's, the operator's totals, and the allowed-origins API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jwks_server import JwksServer, claims, new_key
from platform_fixtures import end_user, new_project, set_project
from stripe_peer import StripePeer
from support import ADMIN_KEY, ClientFactory, assert_error
from test_billing_stripe import API, Shop, connect, shop, signup, stripe_settings

pytestmark = pytest.mark.anyio
__all__ = ["shop"]  # the fixture, shared with the Stripe tests

ORIGIN = "https://app.example"


async def allow_origin(client: httpx.AsyncClient, auth: dict[str, str], project_id: str) -> None:
    added = await client.post(
        f"{API}/projects/{project_id}/origins", json={"origin": ORIGIN + "/"}, headers=auth
    )
    assert added.status_code == 201, added.text
    assert added.json() == {"origins": [ORIGIN]}


async def test_relative_urls_resolve_against_an_allowed_origin(shop: Shop) -> None:
    sdk = {"tier": "pro", "successUrl": "/dashboard?upgraded=1", "cancelUrl": "/pricing"}
    refused = await shop.client.post(
        "/api/create-checkout", json=sdk, headers={**shop.user, "Origin": ORIGIN}
    )
    assert_error(refused, 400, "url_not_allowed")
    assert shop.peer.posted("/v1/checkout/sessions") == []

    await allow_origin(shop.client, shop.auth, shop.project_id)
    other_origin = await shop.client.post(
        "/api/create-checkout", json=sdk, headers={**shop.user, "Origin": "https://evil.example"}
    )
    assert_error(other_origin, 400, "url_not_allowed")
    done = await shop.client.post(
        "/api/create-checkout", json=sdk, headers={**shop.user, "Origin": ORIGIN}
    )
    assert done.status_code == 200, done.text
    [sent] = shop.peer.posted("/v1/checkout/sessions")
    assert sent.form["success_url"] == f"{ORIGIN}/dashboard?upgraded=1"
    assert sent.form["cancel_url"] == f"{ORIGIN}/pricing"
    scheme_relative = await shop.client.post(
        "/api/create-checkout",
        json={**sdk, "successUrl": "//evil.example/x"},
        headers={**shop.user, "Origin": ORIGIN},
    )
    assert_error(scheme_relative, 400, "url_not_allowed")


async def test_products_made_before_connect_get_prices_and_the_sdk_cart_works(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> None:
    client = await make_client(**stripe_settings(stripe_peer))
    auth = await signup(client)
    created = await client.post(
        f"{API}/projects", json={"name": "Shop", "type": "store"}, headers=auth
    )
    project_id = created.json()["project"]["id"]
    pk = {"X-Publishable-Key": created.json()["publishable_key"]}
    product = {"name": "mug", "display_name": "Mug", "price_cents": 1200, "billing_mode": "one_off"}
    made = await client.post(f"{API}/projects/{project_id}/tiers", json=product, headers=auth)
    assert made.status_code == 201, made.text
    before = (await client.get("/api/products", headers=pk)).json()["products"]
    assert before[0]["priceId"] is None

    await connect(client, stripe_peer, auth)
    [after] = (await client.get("/api/products", headers=pk)).json()["products"]
    assert after["priceId"]
    assert after["priceId"].startswith("price_")
    audit = (await client.get(f"{API}/audit", headers=auth)).json()["entries"]
    assert audit[0]["action"] == "stripe.connect"
    assert audit[0]["detail"]["priced"] == 1

    await allow_origin(client, auth, project_id)
    cart = {
        "items": [{"priceId": after["priceId"], "quantity": 2}],
        "email": "buyer@example.com",
        "name": "Buyer",  # the SDK sends it; ignored
        "successUrl": "/cart?ok=1",
        "cancelUrl": "/cart",
    }
    checkout = await client.post("/api/cart/checkout", json=cart, headers={**pk, "Origin": ORIGIN})
    assert checkout.status_code == 200, checkout.text
    [sent] = stripe_peer.posted("/v1/checkout/sessions")
    assert sent.form["line_items"] == [{"price": after["priceId"], "quantity": "2"}]
    assert sent.form["success_url"] == f"{ORIGIN}/cart?ok=1"


async def test_the_sdks_field_names_beside_the_originals(shop: Shop) -> None:
    tracked = await shop.track()
    usage = tracked.json()["usage"]
    assert usage["count"] == usage["usageCount"] == 1
    assert usage["userId"] == shop.user_id
    customer = (await shop.client.get(f"/api/customers/{shop.user_id}", headers=shop.secret)).json()
    created_at: Any = customer["customer"]["createdAt"]
    assert isinstance(created_at, int)
    assert created_at > 1_700_000_000_000

    await shop.buy("pro")
    dashboard = (await shop.client.get("/api/dashboard", headers=shop.secret)).json()
    metrics = dashboard["metrics"]
    assert metrics["activeSubs"] == metrics["activeSubscriptions"] == 1
    assert metrics["cancelingSubs"] == metrics["cancelingSubscriptions"] == 0
    assert metrics["mrr"] == 0  # trialing: nothing billed yet
    assert dashboard["webhookStatus"]["status"] == "receiving"
    assert dashboard["webhookStatus"]["lastEventAt"] == dashboard["webhook"]["lastEventAt"]
    totals = (await shop.client.get("/api/dashboard/totals", headers=shop.secret)).json()["totals"]
    # The shop's project is in test mode: the live totals are empty, under both names.
    assert totals["totalMRR"] == totals["mrr"] == 0
    assert totals["totalCustomers"] == 0
    assert totals["totalRevenue"] == 0


async def test_operator_totals_need_the_admin_key(make_client: ClientFactory) -> None:
    client = await make_client(platform_price_cents=1900, platform_included_end_users=1)
    live = await new_project(client, name="live-app", mode="live")
    await end_user(client, live, "a@example.com")
    await end_user(client, live, "b@example.com")
    test = await new_project(client, name="test-app")
    await end_user(client, test, "c@example.com")

    assert (await client.get("/admin/api/platforms")).status_code in (401, 403)
    wrong = await client.get("/admin/api/platforms", headers={"X-Admin-Key": "x" * 40})
    assert wrong.status_code == 403
    view = await client.get("/admin/api/platforms", headers={"X-Admin-Key": ADMIN_KEY})
    assert view.status_code == 200, view.text
    totals = view.json()["totals"]
    assert totals["total_platforms"] == 2
    assert totals["paying_platforms"] == 0
    assert (totals["total_live_users"], totals["total_test_users"]) == (2, 1)
    assert totals["estimatedOverage"] == 3  # one live user above the included one, 3 cents
    by_id = {p["platformId"]: p for p in view.json()["platforms"]}
    assert by_id[live.platform_id]["live_users"] == 2
    assert by_id[test.platform_id]["test_users"] == 1


async def test_allowed_origins_api(make_client: ClientFactory) -> None:
    client = await make_client()
    auth = await signup(client)
    project = (
        await client.post(f"{API}/projects", json={"name": "A", "type": "saas"}, headers=auth)
    ).json()
    path = f"{API}/projects/{project['project']['id']}/origins"
    for bad in ("http://app.example", "https://app.example/path", "ftp://x", "app.example"):
        assert_error(
            await client.post(path, json={"origin": bad}, headers=auth), 400, "invalid_origin"
        )
    for good in ("https://APP.example:8443", "http://localhost:5173", "https://app.example:8443"):
        assert (await client.post(path, json={"origin": good}, headers=auth)).status_code == 201
    listed = (await client.get(path, headers=auth)).json()["origins"]
    assert listed == ["https://app.example:8443", "http://localhost:5173"]
    removed = await client.delete(path, params={"origin": "http://localhost:5173"}, headers=auth)
    assert removed.status_code == 204
    assert (await client.get(path, headers=auth)).json()["origins"] == ["https://app.example:8443"]
    other = await signup(client, "other@example.com")
    assert (await client.get(path, headers=other)).status_code == 404


async def test_oauth_complete_trades_a_verified_idp_token_for_ours(
    make_client: ClientFactory,
) -> None:
    """The original bound any user id to any project unauthenticated; here the project's own
    identity provider must have signed the token, for this project."""
    client = await make_client()
    idp = JwksServer(keys=[new_key("idp-1")]).start()
    try:
        keys = await new_project(client)
        issuer, audience = "https://idp.example.test", "my-app"
        await set_project(
            client,
            keys.project_id,
            end_user_issuer=issuer,
            end_user_jwks_url=idp.url,
            end_user_audience=audience,
        )
        unbound = await client.post(
            "/oauth/complete", json={"userId": "user_1", "publishableKey": keys.pk}
        )
        assert unbound.status_code == 401
        impostor = JwksServer(keys=[new_key("idp-1")])  # same kid, another private key
        forged = impostor.sign(impostor.keys[0], claims(issuer, audience, "user_1"))
        refused = await client.post(
            "/oauth/complete", headers={**keys.publishable, "X-Clerk-Token": forged}
        )
        assert refused.status_code == 401
        token = idp.sign(idp.keys[0], claims(issuer, audience, "user_1", email="i@example.com"))
        done = await client.post(
            "/oauth/complete", headers={**keys.publishable, "X-Clerk-Token": token}
        )
        assert done.status_code == 200, done.text
        assert done.json()["userId"] == "user_1"
        ours = {**keys.publishable, "X-Clerk-Token": done.json()["token"]}
        usage = await client.get("/api/usage", headers=ours)
        assert usage.status_code == 200
        assert usage.json()["userId"] == "user_1"
    finally:
        idp.stop()
