"""Helpers for the hosted pages' tests: a project whose origin is allowed, forms with their
CSRF token, the development outbox."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from platform_fixtures import Keys, database, new_project
from tollhouse.kit.mail import OutboxMessage
from tollhouse.tenancy import origins

APP_ORIGIN = "https://app.example"
REDIRECT = f"{APP_ORIGIN}/after-login?from=signin"
PASSWORD = "a long enough password"
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
_LINK = re.compile(r"https?://\S+")


async def hosted_project(client: httpx.AsyncClient, **fields: object) -> Keys:
    keys = await new_project(client, **fields)  # type: ignore[arg-type]
    async with database(client).session() as session:
        await origins.allow(session, keys.project_id, APP_ORIGIN)
    return keys


def query(keys: Keys, redirect: str | None = REDIRECT, **extra: str) -> dict[str, str]:
    params = {"pk": keys.pk, **extra}
    if redirect is not None:
        params["redirect"] = redirect
    return params


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def submit(
    client: httpx.AsyncClient, path: str, params: dict[str, str], **fields: str
) -> httpx.Response:
    """GET the page, then POST its form with the page's CSRF token and `fields`."""
    page = await client.get(path, params=params)
    assert page.status_code == 200, page.text
    return await client.post(path, params=params, data={"csrf_token": csrf_of(page), **fields})


async def last_mail_link(client: httpx.AsyncClient, recipient: str) -> str:
    async with database(client).session() as session:
        message = await session.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.recipient == recipient)
            .order_by(OutboxMessage.id.desc())
        )
    assert message is not None, f"no mail to {recipient}"
    found = _LINK.search(message.body)
    assert found
    return found.group(0)


def token_of(location: str) -> str:
    """The `__clerk_jwt` of a redirect back to the app (and that it went to the app)."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == APP_ORIGIN, location
    values = parse_qs(parts.query)
    assert values["from"] == ["signin"]
    return values["__clerk_jwt"][0]


async def sign_up_verified(
    client: httpx.AsyncClient, keys: Keys, email: str = "ada@example.com"
) -> str:
    """Sign up and follow the mailed link; the token handed back to the app."""
    signed_up = await submit(client, "/signup", query(keys), email=email, password=PASSWORD)
    assert signed_up.status_code == 200, signed_up.text
    link = urlsplit(await last_mail_link(client, email))
    params = {k: v[0] for k, v in parse_qs(link.query).items()}
    verified = await submit(client, link.path, params, token=params["token"])
    assert verified.status_code == 303, verified.text
    return token_of(verified.headers["location"])
