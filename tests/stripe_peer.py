"""A local Stripe: the parts localstripe lacks (Checkout Sessions, prices, the billing portal,
Connect OAuth), speaking Stripe's wire format to the unmodified `stripe` SDK.

Form-encoded bodies with `a[b][0][c]=` nesting in, JSON objects with `id`/`object` out,
Stripe-style errors (`{"error": {"type", "message"}}`). Objects live per connected account
(`Stripe-Account` header). Every request is recorded so tests can assert what Stripe got.

Its fixtures (`stripe_peer`, `stripe_peer_server`) are registered for every test module by
`pytest_plugins` in conftest.py; then:

    stripe_peer.base_url                  # STRIPE_API_BASE and STRIPE_CONNECT_BASE
    stripe_peer.requests                  # [Recorded(method, path, form, account, api_key)]
    stripe_peer.posted("/v1/checkout/sessions")  # recorded requests to a path
    stripe_peer.issue_code()              # (OAuth code, acct_…) for /oauth/token
    stripe_peer.complete_session(id)      # paid; subscription mode makes a subscription,
                                          # payment mode a payment intent
    stripe_peer.add_price(499, interval=None)   # a product and price on the operator's account
    stripe_peer.refunded_charge(session_id)     # a `charge.refunded` object for a paid session
    stripe_peer.update_subscription(id, status=…, cancel_at_period_end=…)
    stripe_peer.event(type, obj, account=…)  # an event dict
    stripe_peer.sign(event, secret)       # (payload bytes, Stripe-Signature header)
    await stripe_peer.deliver(client, event, secret)  # POST it, signed, to /webhook/stripe
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from support import in_thread

_KEY_PART = re.compile(r"\[([^\]]*)\]")


def parse_form(body: str) -> dict[str, Any]:
    """`a[b][0][c]=v` → {"a": {"b": [{"c": "v"}]}} (Stripe's encoding, as the SDK sends it)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, Any]
    account: str | None
    api_key: str | None


def _err(status: int, message: str, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status)


@dataclass
class StripePeer:
    base_url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    # objects[account or "platform"][id] = object
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)
    # Every OAuth token handed out (so tests can prove they are not stored in plaintext).
    issued_tokens: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- test helpers -----------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.objects.clear()
            self.codes.clear()
            self.issued_tokens.clear()

    def posted(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path and r.method == "POST"]

    def issue_code(self) -> tuple[str, str]:
        code, account = f"ac_{secrets.token_hex(8)}", f"acct_{secrets.token_hex(8)}"
        self.codes[code] = account
        return code, account

    def find(self, object_id: str) -> tuple[str, dict[str, Any]]:
        for account, store in self.objects.items():
            if object_id in store:
                return account, store[object_id]
        raise KeyError(object_id)

    def complete_session(self, session_id: str) -> dict[str, Any]:
        """Pay the session: a customer, and for subscription mode a subscription."""
        account, session = self.find(session_id)
        with self.lock:
            store = self.objects[account]
            if not session.get("customer"):
                customer = self._new(
                    store, "cus", "customer", {"email": session.get("customer_email")}
                )
                session["customer"] = customer["id"]
            if session["mode"] == "subscription":
                data = session.get("_subscription_data") or {}
                trial = int(data.get("trial_period_days") or 0)
                now = int(time.time())
                end = now + (trial or 30) * 86400
                items = [
                    {
                        "id": f"si_{secrets.token_hex(6)}",
                        "object": "subscription_item",
                        "price": store[item["price"]],
                        "quantity": int(item.get("quantity") or 1),
                        "current_period_end": end,
                    }
                    for item in session["_line_items"]
                ]
                sub = self._new(
                    store,
                    "sub",
                    "subscription",
                    {
                        "customer": session["customer"],
                        "status": "trialing" if trial else "active",
                        "items": {"object": "list", "data": items},
                        "metadata": data.get("metadata") or {},
                        "cancel_at_period_end": False,
                        "canceled_at": None,
                        "trial_end": end if trial else None,
                    },
                )
                session["subscription"] = sub["id"]
            if session["mode"] == "payment" and not session.get("payment_intent"):
                session["payment_intent"] = f"pi_{secrets.token_hex(8)}"
            session.update(status="complete", payment_status="paid")
            return self._public(session)

    def add_price(
        self, unit_amount: int, *, interval: str | None = None, account: str | None = None
    ) -> str:
        """A product and its price on an account (the operator's by default); the price id."""
        with self.lock:
            store = self.objects.setdefault(account or "platform", {})
            product = self._new(store, "prod", "product", {"active": True, "name": "Test"})
            values = {
                "active": True,
                "product": product["id"],
                "unit_amount": unit_amount,
                "currency": "usd",
                "recurring": {"interval": interval} if interval else None,
                "type": "recurring" if interval else "one_time",
            }
            return str(self._new(store, "price", "price", values)["id"])

    def refunded_charge(
        self, session_id: str, *, amount_refunded: int | None = None
    ) -> dict[str, Any]:
        """The charge of a paid payment-mode session, refunded (fully unless told)."""
        _, session = self.find(session_id)
        amount = int(session["amount_total"])
        refunded = amount if amount_refunded is None else amount_refunded
        return {
            "id": f"ch_{secrets.token_hex(8)}",
            "object": "charge",
            "payment_intent": session["payment_intent"],
            "amount": amount,
            "amount_refunded": refunded,
            "refunded": refunded >= amount,
            "currency": session.get("currency", "usd"),
            "metadata": {},
        }

    def update_subscription(self, subscription_id: str, **fields: Any) -> dict[str, Any]:
        _, sub = self.find(subscription_id)
        with self.lock:
            sub.update(fields)
            return dict(sub)

    def event(
        self, type_: str, obj: dict[str, Any], *, account: str | None = None
    ) -> dict[str, Any]:
        return {
            "id": f"evt_{secrets.token_hex(10)}",
            "object": "event",
            "type": type_,
            "account": account,
            "livemode": False,
            "created": int(time.time()),
            "api_version": "2026-10-28",
            "data": {"object": obj},
        }

    @staticmethod
    def sign(event: dict[str, Any], secret: str, *, at: int | None = None) -> tuple[bytes, str]:
        """Stripe's scheme: `t=<ts>,v1=HMAC-SHA256(secret, f"{t}.{payload}")`."""
        payload = json.dumps(event).encode()
        t = at if at is not None else int(time.time())
        mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
        return payload, f"t={t},v1={mac}"

    async def deliver(
        self, client: httpx.AsyncClient, event: dict[str, Any], secret: str
    ) -> httpx.Response:
        """POST `event` to our `/webhook/stripe`, signed as Stripe signs it."""
        payload, header = self.sign(event, secret)
        return await client.post(
            "/webhook/stripe",
            content=payload,
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
        )

    # --- the server -------------------------------------------------------------------

    @staticmethod
    def _new(
        store: dict[str, dict[str, Any]], prefix: str, kind: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        obj = {"id": f"{prefix}_{secrets.token_hex(8)}", "object": kind, **values}
        obj.setdefault("created", int(time.time()))
        obj.setdefault("livemode", False)
        store[obj["id"]] = obj
        return obj

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def app(self) -> Starlette:
        peer = self

        async def handle(request: Request) -> JSONResponse:
            body = (await request.body()).decode()
            form = parse_form(body if request.method == "POST" else request.url.query)
            auth = request.headers.get("authorization", "")
            key = auth.removeprefix("Bearer ").strip() or None
            account = request.headers.get("stripe-account")
            peer.requests.append(Recorded(request.method, request.url.path, form, account, key))
            if not key or not key.startswith("sk_"):
                return _err(401, "Invalid API Key provided.", "authentication_error")
            with peer.lock:
                store = peer.objects.setdefault(account or "platform", {})
                return peer._route(request.method, request.url.path, form, store)

        return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])

    def _route(
        self, method: str, path: str, form: dict[str, Any], store: dict[str, dict[str, Any]]
    ) -> JSONResponse:
        parts = path.strip("/").split("/")
        if path == "/oauth/token":
            account = self.codes.pop(form.get("code", ""), None)
            if account is None:
                body = {"error": "invalid_grant", "error_description": "Authorization code"}
                return JSONResponse(body, status_code=400)
            access, refresh = (
                f"sk_test_oauth_{secrets.token_hex(12)}",
                f"rt_{secrets.token_hex(12)}",
            )
            self.issued_tokens += [access, refresh]
            return JSONResponse(
                {
                    "access_token": access,
                    "refresh_token": refresh,
                    "token_type": "bearer",
                    "scope": "read_write",
                    "livemode": False,
                    "stripe_user_id": account,
                    "stripe_publishable_key": f"pk_test_{secrets.token_hex(8)}",
                }
            )
        if method == "POST" and path == "/v1/products":
            obj = self._new(store, "prod", "product", {"active": True, **form})
            return JSONResponse(obj)
        if method == "POST" and path == "/v1/prices":
            if form.get("product") not in store:
                return _err(400, f"No such product: '{form.get('product')}'")
            values = {
                "active": True,
                "product": form["product"],
                "unit_amount": int(form["unit_amount"]),
                "currency": form.get("currency", "usd"),
                "recurring": form.get("recurring"),
                "type": "recurring" if form.get("recurring") else "one_time",
            }
            return JSONResponse(self._new(store, "price", "price", values))
        if method == "POST" and path == "/v1/customers":
            return JSONResponse(self._new(store, "cus", "customer", form))
        if method == "POST" and path == "/v1/checkout/sessions":
            return self._create_session(form, store)
        if method == "POST" and path == "/v1/billing/meter_events":
            # Accepted as sent (the request is recorded); Stripe's object has no `id`.
            return JSONResponse(
                {
                    "object": "billing.meter_event",
                    "created": int(time.time()),
                    "livemode": False,
                    "event_name": form.get("event_name"),
                    "identifier": form.get("identifier"),
                    "payload": form.get("payload") or {},
                    "timestamp": int(form.get("timestamp") or time.time()),
                }
            )
        if method == "POST" and path == "/v1/billing_portal/sessions":
            if form.get("customer") not in store:
                return _err(400, f"No such customer: '{form.get('customer')}'")
            values = {
                "customer": form["customer"],
                "return_url": form.get("return_url"),
                "url": f"{self.base_url}/portal/{secrets.token_hex(8)}",
            }
            return JSONResponse(self._new(store, "bps", "billing_portal.session", values))
        found = store.get(parts[2]) if len(parts) >= 3 else None
        if found is None and method == "GET" and parts[:3] == ["v1", "checkout", "sessions"]:
            found = store.get(parts[-1])  # retrieve a Checkout Session
        if found is None:
            return _err(404, f"No such object: '{parts[-1]}'")
        if method == "POST" and len(parts) == 5 and parts[4] == "expire":
            found["status"] = "expired"
        elif method == "POST" and len(parts) == 3:
            form = {k: (v == "true" if v in ("true", "false") else v) for k, v in form.items()}
            found.update(form)
        result = self._public(found)
        if "line_items" in (form.get("expand") or []) and "_line_items" in found:
            data = [{"price": store[li["price"]], **li} for li in found["_line_items"]]
            result["line_items"] = {"object": "list", "data": data}
        return JSONResponse(result)

    def _create_session(
        self, form: dict[str, Any], store: dict[str, dict[str, Any]]
    ) -> JSONResponse:
        line_items = form.get("line_items") or []
        for item in line_items:
            price = store.get(item.get("price", ""))
            if price is None or not price["active"]:
                return _err(400, f"No such price: '{item.get('price')}'")
        amount = sum(
            store[li["price"]]["unit_amount"] * int(li.get("quantity") or 1) for li in line_items
        )
        values = {
            "mode": form.get("mode"),
            "status": "open",
            "payment_status": "unpaid",
            "metadata": form.get("metadata") or {},
            "client_reference_id": form.get("client_reference_id"),
            "customer": form.get("customer"),
            "customer_email": form.get("customer_email"),
            "success_url": form.get("success_url"),
            "cancel_url": form.get("cancel_url"),
            "amount_total": amount,
            "currency": "usd",
            "subscription": None,
            "expires_at": int(form.get("expires_at") or time.time() + 86400),
            "_line_items": line_items,
            "_subscription_data": form.get("subscription_data"),
        }
        obj = self._new(store, "cs_test", "checkout.session", values)
        obj["url"] = f"{self.base_url}/pay/{obj['id']}"
        return JSONResponse(self._public(obj))


@pytest.fixture(scope="session")
def stripe_peer_server() -> Iterator[StripePeer]:
    peer = StripePeer()
    with in_thread(peer.app(), "the local Stripe peer") as url:
        peer.base_url = url
        yield peer


@pytest.fixture
def stripe_peer(stripe_peer_server: StripePeer) -> StripePeer:
    """The session's local Stripe, emptied for this test."""
    stripe_peer_server.reset()
    return stripe_peer_server
