"""The sandbox as an ASGI app: the subset of Stripe's API Tollhouse uses, for the unmodified
`stripe` SDK, and the pages a person clicks through.

API (`Authorization: Bearer sk_test_…|sk_live_…`, optional `Stripe-Account: acct_…`):
products, prices (`price_data` inline too), customers, checkout sessions (create, retrieve
with `expand[]=line_items`, expire), billing portal sessions, subscriptions (retrieve,
update, cancel), refunds, billing meter events, the account, webhook endpoints, and
Connect's `POST /oauth/token`.

Pages: `/pay/{session}` (Checkout), `/portal/{session}` (the billing portal),
`/oauth/authorize` (Connect's consent) and `/` (recent webhook deliveries). What a person
does on a page is announced by webhooks before the page redirects, so the effect is there
when the browser lands back on the app; what an API call does is announced after the answer
(the caller may still hold a database transaction while it waits for Stripe).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tollhouse.stripe_sandbox import pages
from tollhouse.stripe_sandbox.state import (
    Obj,
    Recorded,
    Sandbox,
    Store,
    StripeError,
    public,
)
from tollhouse.stripe_sandbox.webhooks import deliver, webhook_endpoint
from tollhouse.stripe_sandbox.wire import error, parse_form


def _flags(form: Obj) -> Obj:
    return {k: (v == "true" if v in ("true", "false") else v) for k, v in form.items()}


class SandboxApi:
    """Routes a parsed API request to the sandbox; the answer and the events it made."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def handle(
        self, method: str, path: str, form: Obj, account: str | None, livemode: bool
    ) -> tuple[Obj, list[Obj]]:
        sb, store = self.sandbox, self.sandbox.store(account)
        parts = path.strip("/").split("/")
        if path == "/oauth/token":
            return sb.exchange_code(str(form.get("code", "")), livemode), []
        creators = {
            "/v1/products": lambda: sb.create_product(store, form, livemode),
            "/v1/prices": lambda: sb.create_price(store, form, livemode),
            "/v1/customers": lambda: sb.new(
                store, "cus", "customer", dict(form), livemode=livemode
            ),
            "/v1/checkout/sessions": lambda: sb.create_session(store, form, livemode),
            "/v1/billing_portal/sessions": lambda: sb.portal_session(store, form, livemode),
        }
        if method == "POST" and path in creators:
            return public(creators[path]()), []
        if method == "POST" and path == "/v1/billing/meter_events":
            return self._meter_event(form), []
        if method == "POST" and path == "/v1/refunds":
            refund, events = sb.refund(store, form)
            return public(refund), events
        if method == "GET" and path == "/v1/account":
            return self._account(account, livemode), []
        if path == "/v1/webhook_endpoints":
            return self._endpoints(method, form, livemode), []
        is_session = parts[:3] == ["v1", "checkout", "sessions"]
        if method == "POST" and is_session and len(parts) == 5 and parts[4] == "expire":
            session, events = sb.expire_session(store, parts[3])
            return public(session), events
        if parts[:2] == ["v1", "subscriptions"] and len(parts) == 3:
            return self._subscription(method, store, parts[2], form)
        return self._object(method, store, parts, form), []

    def _object(self, method: str, store: Store, parts: list[str], form: Obj) -> Obj:
        """Retrieve (GET) or update (POST) `/v1/<kind>/<id>` (checkout sessions: 4 parts)."""
        nested = parts[:3] == ["v1", "checkout", "sessions"]
        object_id = (
            parts[3] if nested and len(parts) == 4 else parts[2] if len(parts) == 3 else None
        )
        found = store.get(object_id) if object_id else None
        if found is None or method not in ("GET", "POST"):
            raise StripeError(404, f"No such object: '{parts[-1]}'")
        if method == "POST":
            found.update(_flags(form))
        result = public(found)
        if "line_items" in (form.get("expand") or []) and "_line_items" in found:
            result["line_items"] = self.sandbox.line_items(store, found)
        return result

    def _subscription(
        self, method: str, store: Store, sub_id: str, form: Obj
    ) -> tuple[Obj, list[Obj]]:
        sub = self.sandbox.get(store, sub_id, "subscription")
        if method == "GET":
            return public(sub), []
        if method == "DELETE":
            events = self.sandbox.change_subscription(sub, cancel="now")
            return public(sub), events
        fields = _flags(form)
        cancel = "period_end" if fields.pop("cancel_at_period_end", None) is True else None
        if cancel is None and sub["cancel_at_period_end"]:
            fields.update(cancel_at_period_end=False, canceled_at=None)
        events = self.sandbox.change_subscription(sub, cancel=cancel, **fields)
        return public(sub), events

    def _meter_event(self, form: Obj) -> Obj:
        # Accepted as sent (the request is recorded); Stripe's object has no `id`.
        return {
            "object": "billing.meter_event",
            "created": int(form.get("timestamp") or 0),
            "livemode": False,
            "event_name": form.get("event_name"),
            "identifier": form.get("identifier"),
            "payload": form.get("payload") or {},
            "timestamp": int(form.get("timestamp") or 0),
        }

    def _account(self, account: str | None, livemode: bool) -> Obj:
        return {
            "id": account or "acct_sandbox_platform",
            "object": "account",
            "type": "standard",
            "charges_enabled": True,
            "payouts_enabled": True,
            "details_submitted": True,
            "country": "US",
            "default_currency": "usd",
            "livemode": livemode,
            "settings": {"dashboard": {"display_name": "Stripe sandbox"}},
        }

    def _endpoints(self, method: str, form: Obj, livemode: bool) -> Obj:
        if method == "GET":
            data = [
                {"id": e.id, "object": "webhook_endpoint", "url": e.url, "livemode": e.livemode}
                for e in self.sandbox.endpoints
            ]
            return {"object": "list", "data": data, "has_more": False}
        url = str(form.get("url") or "")
        if urlsplit(url).scheme not in ("http", "https"):
            raise StripeError(400, "url must be an http(s) URL.")
        secret = f"whsec_{secrets.token_hex(16)}"
        endpoint = webhook_endpoint(self.sandbox, url, secret, livemode=livemode)
        return {
            "id": endpoint.id,
            "object": "webhook_endpoint",
            "url": url,
            "secret": secret,  # shown once, as Stripe does
            "enabled_events": form.get("enabled_events") or ["*"],
            "livemode": livemode,
            "status": "enabled",
        }


def sandbox_app(sandbox: Sandbox, client: httpx.AsyncClient) -> Starlette:
    """The ASGI app; `client` delivers the webhooks."""
    api = SandboxApi(sandbox)

    async def handle_api(request: Request) -> Response:
        body = (await request.body()).decode()
        form = parse_form(body if request.method == "POST" else request.url.query)
        key = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
        account = request.headers.get("stripe-account")
        path = request.url.path
        sandbox.record(Recorded(request.method, path, form, account, key))
        if not key or not key.startswith(("sk_test_", "sk_live_")):
            return error(401, "Invalid API Key provided.", "authentication_error")
        try:
            with sandbox.lock:
                answer, events = api.handle(
                    request.method, path, form, account, key.startswith("sk_live_")
                )
        except StripeError as exc:
            if exc.type == "invalid_grant":  # OAuth's own error shape
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": exc.message}, 400
                )
            return error(exc.status, exc.message, exc.type)
        task = BackgroundTask(deliver, sandbox, client, events) if events else None
        return JSONResponse(answer, background=task)

    async def pay_page(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        try:
            account, session = sandbox.find(session_id)
        except KeyError:
            return pages.page("Checkout", "<p>No such Checkout Session.</p>", 404)
        store = sandbox.store(account)
        lines = sandbox.line_items(store, session)["data"]
        if request.method == "GET":
            return pages.checkout(session, lines)
        form = parse_form((await request.body()).decode())
        if str(form.get("card", "")).replace(" ", "") == pages.DECLINED_CARD:
            return pages.checkout(session, lines, error="Your card was declined.")
        email = str(form.get("email") or "").strip() or None
        try:
            paid, events = sandbox.pay(session_id, email=email)
        except StripeError as exc:
            return pages.page("Checkout", f"<p>{exc.message}</p>", exc.status)
        await deliver(sandbox, client, events)
        success = str(paid.get("success_url") or "/")
        return RedirectResponse(success.replace("{CHECKOUT_SESSION_ID}", session_id), 303)

    async def portal_page(request: Request) -> Response:
        try:
            account, portal = sandbox.find(request.path_params["portal_id"])
        except KeyError:
            return pages.page("Billing portal", "<p>No such portal session.</p>", 404)
        store = sandbox.store(account)
        if request.method == "POST":
            form = parse_form((await request.body()).decode())
            action = form.get("action")
            sub = store.get(request.path_params["sub_id"])
            if sub is None or sub.get("customer") != portal["customer"]:
                return pages.page("Billing portal", "<p>No such subscription.</p>", 404)
            try:
                if action == "resume":
                    events = sandbox.change_subscription(
                        sub, cancel=None, cancel_at_period_end=False, canceled_at=None
                    )
                elif action in ("now", "period_end"):
                    events = sandbox.change_subscription(sub, cancel=action)
                else:
                    return pages.page("Billing portal", "<p>Unknown action.</p>", 400)
            except StripeError as exc:
                return pages.page("Billing portal", f"<p>{exc.message}</p>", exc.status)
            await deliver(sandbox, client, events)
            return RedirectResponse(f"/portal/{portal['id']}", 303)
        subs = sandbox.subscriptions_of(store, portal["customer"])
        return pages.portal(portal, subs, store)

    async def authorize(request: Request) -> Response:
        if request.method == "GET":
            params = dict(request.query_params)
        else:
            params = {k: str(v) for k, v in parse_form((await request.body()).decode()).items()}
        redirect = params.get("redirect_uri", "")
        if not params.get("client_id", "").startswith("ca_") or urlsplit(redirect).scheme not in (
            "http",
            "https",
        ):
            return pages.page(
                "Connect with Stripe", "<p>Invalid client_id or redirect_uri.</p>", 400
            )
        if request.method == "GET":
            return pages.consent({k: v for k, v in params.items() if k != "decision"})
        answer: dict[str, Any] = {"state": params.get("state", "")}
        if params.get("decision") == "allow":
            answer["code"] = sandbox.issue_code()[0]
        else:
            answer.update(error="access_denied", error_description="The user denied your request")
        separator = "&" if "?" in redirect else "?"
        return RedirectResponse(f"{redirect}{separator}{urlencode(answer)}", 303)

    async def home(_: Request) -> Response:
        return pages.home(sandbox)

    return Starlette(
        routes=[
            Route("/", home),
            Route("/pay/{session_id}", pay_page, methods=["GET", "POST"]),
            Route("/portal/{portal_id}", portal_page),
            Route("/portal/{portal_id}/subscriptions/{sub_id}", portal_page, methods=["POST"]),
            Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
            Route("/oauth/token", handle_api, methods=["POST"]),
            Route("/v1/{path:path}", handle_api, methods=["GET", "POST", "DELETE"]),
        ]
    )
