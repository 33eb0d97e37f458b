"""The sandbox's Stripe objects, in memory, and what happens to them.

Objects live per account: the operator's own (`PLATFORM`) and each connected `acct_…`
(the `Stripe-Account` header). An object created with an `sk_live_…` key is `livemode`,
and its events are signed with the live endpoint's secret. Every change that Stripe would
announce returns the events it makes; whoever caused it delivers them (`webhooks.py`).

In memory on purpose: a sandbox is a scratch pad a restart should wipe (like Stripe's "delete
all test data"), and the prices it must know are seeded from the catalogue at start.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

PLATFORM = "platform"
KEEP_REQUESTS = 1000
Obj = dict[str, Any]
Store = dict[str, Obj]
MONTH_SECONDS = 30 * 86400
INTERVAL_SECONDS = {"day": 86400, "week": 7 * 86400, "month": MONTH_SECONDS, "year": 365 * 86400}


class StripeError(Exception):
    """Answered as Stripe's error body (`{"error": {"type", "message"}}`)."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type_


@dataclass
class Recorded:
    """One API request as the sandbox received it."""

    method: str
    path: str
    form: dict[str, Any]
    account: str | None
    api_key: str | None


@dataclass(frozen=True)
class Endpoint:
    """Where events of one mode go, signed with its secret."""

    id: str
    url: str
    secret: str
    livemode: bool


@dataclass
class Delivery:
    event_id: str
    type: str
    url: str
    status: int | None
    error: str | None = None


def _now() -> int:
    return int(time.time())


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def public(obj: Obj) -> Obj:
    """An object as the API shows it (our bookkeeping fields start with `_`)."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


@dataclass
class Sandbox:
    base_url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    # objects[account or PLATFORM][id] = object
    objects: dict[str, Store] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)
    # Every OAuth token handed out (so tests can prove they are not stored in plaintext).
    issued_tokens: list[str] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    deliveries: deque[Delivery] = field(default_factory=lambda: deque(maxlen=200))
    lock: threading.RLock = field(default_factory=threading.RLock)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.objects.clear()
            self.codes.clear()
            self.issued_tokens.clear()
            self.endpoints.clear()
            self.deliveries.clear()

    # --- bookkeeping ------------------------------------------------------------------

    def record(self, request: Recorded) -> None:
        """Keep the latest requests (tests assert what Stripe was sent)."""
        with self.lock:
            self.requests.append(request)
            del self.requests[:-KEEP_REQUESTS]

    def store(self, account: str | None) -> Store:
        return self.objects.setdefault(account or PLATFORM, {})

    def new(
        self, store: Store, prefix: str, kind: str, values: Obj, *, livemode: bool = False
    ) -> Obj:
        obj = {"id": values.pop("id", None) or _new_id(prefix), "object": kind, **values}
        obj.setdefault("created", _now())
        obj.setdefault("livemode", livemode)
        store[obj["id"]] = obj
        return obj

    def find(self, object_id: str) -> tuple[str, Obj]:
        """(account, object) of any object; KeyError when there is none."""
        with self.lock:
            for account, store in self.objects.items():
                if object_id in store:
                    return account, store[object_id]
        raise KeyError(object_id)

    def get(self, store: Store, object_id: str, kind: str) -> Obj:
        found = store.get(object_id)
        if found is None or found["object"] != kind:
            raise StripeError(404, f"No such {kind.replace('_', ' ')}: '{object_id}'")
        return found

    def event(
        self, type_: str, obj: Obj, *, account: str | None = None, livemode: bool | None = None
    ) -> Obj:
        return {
            "id": _new_id("evt"),
            "object": "event",
            "type": type_,
            "account": account,
            "livemode": bool(obj.get("livemode")) if livemode is None else livemode,
            "created": _now(),
            "api_version": "2026-10-28",
            "data": {"object": public(obj)},
        }

    def _event_of(self, type_: str, obj: Obj) -> Obj:
        account, _ = self.find(obj["id"])
        return self.event(type_, obj, account=None if account == PLATFORM else account)

    # --- the catalogue ----------------------------------------------------------------

    def create_product(self, store: Store, form: Obj, livemode: bool) -> Obj:
        if not form.get("name"):
            raise StripeError(400, "Missing required param: name.")
        return self.new(store, "prod", "product", {"active": True, **form}, livemode=livemode)

    def create_price(self, store: Store, form: Obj, livemode: bool) -> Obj:
        product = form.get("product")
        if product is None and isinstance(form.get("product_data"), dict):
            product = self.create_product(store, dict(form["product_data"]), livemode)["id"]
        if product not in store:
            raise StripeError(400, f"No such product: '{product}'")
        try:
            amount = int(form["unit_amount"])
        except (KeyError, ValueError):
            raise StripeError(400, "Missing required param: unit_amount.") from None
        recurring = form.get("recurring") or None
        values = {
            "id": form.get("id"),
            "active": form.get("active", True) not in ("false", False),
            "product": product,
            "unit_amount": amount,
            "currency": str(form.get("currency") or "usd").lower(),
            "recurring": recurring,
            "type": "recurring" if recurring else "one_time",
        }
        return self.new(store, "price", "price", values, livemode=livemode)

    def add_price(
        self,
        unit_amount: int,
        *,
        interval: str | None = None,
        account: str | None = None,
        price_id: str | None = None,
        name: str = "Test",
        livemode: bool = False,
    ) -> str:
        """A product and its price on an account (the operator's by default); the price id."""
        with self.lock:
            store = self.store(account)
            if price_id is not None and price_id in store:
                return price_id
            product = self.create_product(store, {"name": name}, livemode)
            form: Obj = {"id": price_id, "product": product["id"], "unit_amount": unit_amount}
            if interval:
                form["recurring"] = {"interval": interval}
            return str(self.create_price(store, form, livemode)["id"])

    # --- checkout -----------------------------------------------------------------------

    def _line(self, store: Store, item: Obj, livemode: bool) -> Obj:
        if isinstance(item.get("price_data"), dict):
            data = dict(item["price_data"])
            data["active"] = False  # an inline price is never offered again
            price = self.create_price(store, data, livemode)
        else:
            found = store.get(str(item.get("price")))
            if found is None or found["object"] != "price" or not found["active"]:
                raise StripeError(400, f"No such price: '{item.get('price')}'")
            price = found
        quantity = item.get("quantity")
        return {
            "id": _new_id("li"),
            "object": "item",
            "price": price["id"],
            "quantity": int(quantity) if quantity is not None else None,
        }

    def create_session(self, store: Store, form: Obj, livemode: bool) -> Obj:
        mode = form.get("mode")
        if mode not in ("payment", "subscription"):
            raise StripeError(400, "mode must be payment or subscription.")
        items = form.get("line_items") or []
        if not items:
            raise StripeError(400, "line_items: at least one is required.")
        lines = [self._line(store, item, livemode) for item in items]
        amount = sum(
            store[line["price"]]["unit_amount"] * (line["quantity"] or 0) for line in lines
        )
        currency = store[lines[0]["price"]]["currency"]
        values = {
            "mode": mode,
            "status": "open",
            "payment_status": "unpaid",
            "metadata": form.get("metadata") or {},
            "client_reference_id": form.get("client_reference_id"),
            "customer": form.get("customer"),
            "customer_email": form.get("customer_email"),
            "customer_details": None,
            "success_url": form.get("success_url"),
            "cancel_url": form.get("cancel_url"),
            "amount_total": amount,
            "currency": currency,
            "subscription": None,
            "payment_intent": None,
            "expires_at": int(form.get("expires_at") or _now() + 86400),
            "_line_items": lines,
            "_subscription_data": form.get("subscription_data") or {},
            "_payment_intent_data": form.get("payment_intent_data") or {},
        }
        session = self.new(store, "cs_test", "checkout.session", values, livemode=livemode)
        session["url"] = f"{self.base_url}/pay/{session['id']}"
        return session

    def line_items(self, store: Store, session: Obj) -> Obj:
        data = []
        for line in session["_line_items"]:
            price = store[line["price"]]
            product = store.get(price["product"]) or {}
            total = price["unit_amount"] * (line["quantity"] or 0)
            data.append(
                {
                    **line,
                    "price": public(price),
                    "description": product.get("name"),
                    "amount_subtotal": total,
                    "amount_total": total,
                    "currency": price["currency"],
                }
            )
        return {"object": "list", "data": data, "has_more": False}

    def complete_session(self, session_id: str, *, email: str | None = None) -> Obj:
        """Pay the session (its public form): a customer, and for subscription mode a
        subscription and its first invoice, for payment mode a payment intent and charge."""
        return self.pay(session_id, email=email)[0]

    def pay(self, session_id: str, *, email: str | None = None) -> tuple[Obj, list[Obj]]:
        """`complete_session` and the events Stripe sends about it, in Stripe's order."""
        account, session = self.find(session_id)
        with self.lock:
            if session["object"] != "checkout.session":
                raise StripeError(404, f"No such checkout session: '{session_id}'")
            if session["status"] != "open":
                raise StripeError(400, f"This Checkout Session is {session['status']}.")
            store, live = self.objects[account], bool(session["livemode"])
            email = email or session.get("customer_email")
            if not session.get("customer"):
                customer = self.new(store, "cus", "customer", {"email": email}, livemode=live)
                session["customer"] = customer["id"]
            session["customer_details"] = {"email": email}
            events: list[Obj] = []
            if session["mode"] == "subscription":
                sub, invoice = self._subscribe(store, session)
                session["subscription"] = sub["id"]
                events += [
                    self._event_of("customer.subscription.created", sub),
                    self._event_of("invoice.paid", invoice),
                ]
            else:
                session["payment_intent"] = _new_id("pi")
                charge = {
                    "payment_intent": session["payment_intent"],
                    "amount": session["amount_total"],
                    "amount_refunded": 0,
                    "refunded": False,
                    "currency": session["currency"],
                    "customer": session["customer"],
                    "metadata": session["_payment_intent_data"].get("metadata") or {},
                }
                self.new(store, "ch", "charge", charge, livemode=live)
            session.update(status="complete", payment_status="paid")
            events.append(self._event_of("checkout.session.completed", session))
            return public(session), events

    def _subscribe(self, store: Store, session: Obj) -> tuple[Obj, Obj]:
        data = session["_subscription_data"]
        trial = int(data.get("trial_period_days") or 0)
        live, now = bool(session["livemode"]), _now()
        first = store[session["_line_items"][0]["price"]]
        interval = str((first.get("recurring") or {}).get("interval"))
        period = INTERVAL_SECONDS.get(interval, MONTH_SECONDS)
        end = now + (trial * 86400 if trial else period)
        items = [
            {
                "id": _new_id("si"),
                "object": "subscription_item",
                "price": public(store[line["price"]]),
                "quantity": line["quantity"] or 1,
                "current_period_start": now,
                "current_period_end": end,
            }
            for line in session["_line_items"]
        ]
        metadata = data.get("metadata") or {}
        sub = self.new(
            store,
            "sub",
            "subscription",
            {
                "customer": session["customer"],
                "status": "trialing" if trial else "active",
                "items": {"object": "list", "data": items},
                "metadata": metadata,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "current_period_start": now,
                "current_period_end": end,
                "trial_end": end if trial else None,
            },
            livemode=live,
        )
        invoice = self.new(
            store,
            "in",
            "invoice",
            {
                "customer": session["customer"],
                "subscription": sub["id"],
                "billing_reason": "subscription_create",
                "status": "paid",
                "amount_paid": 0 if trial else session["amount_total"],
                "currency": session["currency"],
                "parent": {
                    "type": "subscription_details",
                    "subscription_details": {"subscription": sub["id"], "metadata": metadata},
                },
            },
            livemode=live,
        )
        return sub, invoice

    def expire_session(self, store: Store, session_id: str) -> tuple[Obj, list[Obj]]:
        session = self.get(store, session_id, "checkout.session")
        if session["status"] != "open":
            raise StripeError(400, f"This Checkout Session is {session['status']}.")
        session["status"] = "expired"
        return session, [self._event_of("checkout.session.expired", session)]

    # --- subscriptions, refunds, the portal ---------------------------------------------

    def update_subscription(self, subscription_id: str, **fields: Any) -> Obj:
        """Change a subscription as its owner would (no event: see `change_subscription`)."""
        _, sub = self.find(subscription_id)
        with self.lock:
            sub.update(fields)
            return dict(sub)

    def change_subscription(self, sub: Obj, *, cancel: str | None, **fields: Any) -> list[Obj]:
        """Cancel (`now` or `period_end`), resume (`cancel=None` + fields), and the event."""
        with self.lock:
            if sub["status"] == "canceled":
                raise StripeError(400, "This subscription is canceled.")
            sub.update(fields)
            if cancel == "now":
                sub.update(status="canceled", canceled_at=_now(), cancel_at_period_end=False)
                return [self._event_of("customer.subscription.deleted", sub)]
            if cancel == "period_end":
                sub.update(cancel_at_period_end=True, canceled_at=_now())
            return [self._event_of("customer.subscription.updated", sub)]

    def refund(self, store: Store, form: Obj) -> tuple[Obj, list[Obj]]:
        """A refund of a charge (by `charge` or `payment_intent`); fully unless `amount`."""
        wanted = form.get("charge") or form.get("payment_intent")
        charge = next(
            (
                obj
                for obj in store.values()
                if obj["object"] == "charge" and wanted in (obj["id"], obj["payment_intent"])
            ),
            None,
        )
        if charge is None:
            raise StripeError(404, f"No such charge or payment intent: '{wanted}'")
        left = charge["amount"] - charge["amount_refunded"]
        amount = int(form.get("amount") or left)
        if amount <= 0 or amount > left:
            raise StripeError(400, f"Refund amount must be between 1 and {left}.")
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        values = {
            "amount": amount,
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "currency": charge["currency"],
            "status": "succeeded",
        }
        refund = self.new(store, "re", "refund", values, livemode=bool(charge["livemode"]))
        return refund, [self._event_of("charge.refunded", charge)]

    def refunded_charge(self, session_id: str, *, amount_refunded: int | None = None) -> Obj:
        """The charge of a paid payment-mode session, refunded (fully unless told)."""
        account, session = self.find(session_id)
        with self.lock:
            form: Obj = {"payment_intent": session["payment_intent"]}
            if amount_refunded is not None:
                form["amount"] = amount_refunded
            _, events = self.refund(self.objects[account], form)
            return dict(events[0]["data"]["object"])

    def portal_session(self, store: Store, form: Obj, livemode: bool) -> Obj:
        customer = form.get("customer")
        if customer not in store:
            raise StripeError(400, f"No such customer: '{customer}'")
        values = {"customer": customer, "return_url": form.get("return_url")}
        portal = self.new(store, "bps", "billing_portal.session", values, livemode=livemode)
        portal["url"] = f"{self.base_url}/portal/{portal['id']}"
        return portal

    def subscriptions_of(self, store: Store, customer: str) -> list[Obj]:
        return [
            obj
            for obj in store.values()
            if obj["object"] == "subscription" and obj["customer"] == customer
        ]

    # --- Connect ------------------------------------------------------------------------

    def issue_code(self, account: str | None = None) -> tuple[str, str]:
        """A one-time OAuth code for a (new) connected account: (code, acct_…)."""
        code, account = f"ac_{secrets.token_hex(8)}", account or _new_id("acct")
        with self.lock:
            self.codes[code] = account
            self.store(account)
        return code, account

    def exchange_code(self, code: str, livemode: bool) -> Obj:
        with self.lock:
            account = self.codes.pop(code, None)
            if account is None:
                raise StripeError(400, "Authorization code does not exist.", "invalid_grant")
            prefix = "sk_live" if livemode else "sk_test"
            access, refresh = f"{prefix}_oauth_{secrets.token_hex(12)}", _new_id("rt")
            self.issued_tokens += [access, refresh]
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "scope": "read_write",
            "livemode": livemode,
            "stripe_user_id": account,
            "stripe_publishable_key": f"pk_{'live' if livemode else 'test'}_{secrets.token_hex(8)}",
        }
