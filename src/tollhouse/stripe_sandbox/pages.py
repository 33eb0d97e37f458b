"""The sandbox's pages for people: Checkout, the billing portal, Connect's consent screen
and a home page listing recent webhook deliveries. Server-rendered, self-contained (no CDN,
no script), every value escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from starlette.responses import HTMLResponse

from tollhouse.stripe_sandbox.state import Obj, Sandbox

BANNER = "Stripe sandbox — nothing here is real money; never use it in production."
# A card that is declined, like Stripe's test card 4000 0000 0000 0002.
DECLINED_CARD = "4000000000000002"

_STYLE = """
body{font:16px system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5rem 1rem;border-radius:6px}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.3rem;border-bottom:1px solid #ddd}
button{font:inherit;padding:.5rem 1.2rem;margin:.3rem .3rem 0 0;cursor:pointer}
input{font:inherit;padding:.3rem;width:100%;box-sizing:border-box}.error{color:#a00}
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><p class=banner>{escape(BANNER)}</p>"
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status)


def money(cents: int | None, currency: str) -> str:
    return f"{(cents or 0) / 100:,.2f} {currency.upper()}"


def checkout(session: Obj, lines: list[dict[str, Any]], error: str | None = None) -> HTMLResponse:
    rows = "".join(
        f"<tr><td>{escape(str(line.get('description') or line['price']['id']))}</td>"
        f"<td>× {line['quantity'] or 'metered'}</td>"
        f"<td>{money(line['amount_total'], line['currency'])}</td></tr>"
        for line in lines
    )
    email = escape(
        str(
            (session.get("customer_details") or {}).get("email")
            or session.get("customer_email")
            or ""
        )
    )
    status = session["status"]
    if status != "open":
        return page("Checkout", f"<p>This Checkout Session is <b>{escape(status)}</b>.</p>", 410)
    cancel = session.get("cancel_url")
    cancel_link = f'<p><a href="{escape(cancel)}">Cancel and go back</a></p>' if cancel else ""
    what = "Subscribe" if session["mode"] == "subscription" else "Pay"
    total = money(session["amount_total"], session["currency"])
    problem = f"<p class=error>{escape(error)}</p>" if error else ""
    body = f"""{problem}
<table><tr><th>item</th><th>quantity</th><th>amount</th></tr>{rows}
<tr><th>total</th><td></td><th>{total}</th></tr></table>
<form method=post action="/pay/{escape(session["id"])}">
<p><label>Email <input name=email type=email value="{email}"></label></p>
<p><label>Card number <input name=card value="4242424242424242"></label>
<small>4242… pays; {DECLINED_CARD} is declined.</small></p>
<button type=submit>{what}</button></form>{cancel_link}"""
    return page("Checkout", body, 402 if error else 200)


def portal(portal_session: Obj, subscriptions: list[Obj], store: dict[str, Obj]) -> HTMLResponse:
    rows = []
    for sub in subscriptions:
        item = (sub["items"]["data"] or [{}])[0]
        price = item.get("price") or {}
        product = store.get(str(price.get("product"))) or {}
        name = escape(str(product.get("name") or price.get("id")))
        state = escape(
            sub["status"] + (" (cancels at period end)" if sub["cancel_at_period_end"] else "")
        )
        action = f"/portal/{escape(portal_session['id'])}/subscriptions/{escape(sub['id'])}"
        buttons = ""
        if sub["status"] != "canceled":
            choice = (
                "<button name=action value=resume>Resume</button>"
                if sub["cancel_at_period_end"]
                else "<button name=action value=period_end>Cancel at period end</button>"
            )
            buttons = (
                f'<form method=post action="{action}">{choice}'
                "<button name=action value=now>Cancel now</button></form>"
            )
        rows.append(f"<tr><td>{name}</td><td>{state}</td><td>{buttons}</td></tr>")
    listing = "".join(rows) or "<tr><td colspan=3>No subscriptions.</td></tr>"
    back = portal_session.get("return_url")
    link = f'<p><a href="{escape(back)}">Return</a></p>' if back else ""
    body = (
        f"<p>Customer {escape(portal_session['customer'])}</p>"
        f"<table><tr><th>plan</th><th>status</th><th></th></tr>{listing}</table>{link}"
    )
    return page("Billing portal", body)


def consent(params: dict[str, str]) -> HTMLResponse:
    hidden = "".join(
        f'<input type=hidden name="{escape(k)}" value="{escape(v)}">' for k, v in params.items()
    )
    body = f"""<p>The platform <b>{escape(params["client_id"])}</b> asks to
manage payments on your Stripe account ({escape(params.get("scope") or "read_write")}).
A new sandbox account is connected.</p>
<form method=post action="/oauth/authorize">{hidden}
<button name=decision value=allow>Connect my Stripe account</button>
<button name=decision value=deny>Deny</button></form>"""
    return page("Connect with Stripe", body)


def home(sandbox: Sandbox) -> HTMLResponse:
    endpoints = "".join(
        f"<li>{escape(e.url)} ({'live' if e.livemode else 'test'})</li>" for e in sandbox.endpoints
    )
    deliveries = "".join(
        f"<tr><td>{escape(d.type)}</td><td>{escape(d.url)}</td>"
        f"<td>{d.status if d.status is not None else escape(d.error or '')}</td></tr>"
        for d in list(sandbox.deliveries)[:50]
    )
    body = (
        f"<p>API base: <code>{escape(sandbox.base_url)}</code></p>"
        f"<h2>Webhook endpoints</h2><ul>{endpoints or '<li>none</li>'}</ul>"
        f"<h2>Recent deliveries</h2><table><tr><th>event</th><th>to</th><th>answer</th></tr>"
        f"{deliveries}</table>"
    )
    return page("Stripe sandbox", body)
