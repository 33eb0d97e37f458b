"""Platform API fixtures: platforms, projects with keys and tiers, made through the services
(as the console would), plus small request helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import update

from support import PEPPER, app_of
from tollhouse.catalog import service as catalog
from tollhouse.catalog.schemas import TierCreate
from tollhouse.db.engine import Database
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.keys import Mode
from tollhouse.tenancy.models import Project

SAAS_TIERS: list[dict[str, Any]] = [
    {"name": "free", "display_name": "Free", "limit": 3, "features": ["3 calls"]},
    {"name": "pro", "display_name": "Pro", "price_cents": 2900, "limit": 10},
    {"name": "max", "display_name": "Max", "price_cents": 9900, "limit": "unlimited"},
]
STORE_PRODUCTS: list[dict[str, Any]] = [
    {"name": "A", "display_name": "Product A", "price_cents": 500, "inventory": 2},
    {"name": "B", "display_name": "Product B", "price_cents": 700, "inventory": 0},
    {"name": "C", "display_name": "Product C", "price_cents": 900},
]


@dataclass(frozen=True)
class Keys:
    project_id: str
    platform_id: str
    pk: str
    sk: str
    pk_id: str
    sk_id: str

    @property
    def secret(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sk}"}

    @property
    def publishable(self) -> dict[str, str]:
        return {"X-Publishable-Key": self.pk}


def database(client: httpx.AsyncClient) -> Database:
    db = app_of(client).state.database
    assert isinstance(db, Database)
    return db


async def new_platform(client: httpx.AsyncClient, name: str = "acme") -> str:
    async with database(client).session() as session:
        platform = await tenancy.create_platform(session, name)
        return platform.id


async def new_project(
    client: httpx.AsyncClient,
    platform_id: str | None = None,
    *,
    name: str = "app",
    mode: Mode = "test",
    type: str = "saas",
    tiers: list[dict[str, Any]] | None = None,
    **settings: Any,
) -> Keys:
    """A project with a key pair and its tiers (SAAS_TIERS / STORE_PRODUCTS by type)."""
    platform_id = platform_id or await new_platform(client)
    if tiers is None:
        tiers = STORE_PRODUCTS if type == "store" else SAAS_TIERS
    async with database(client).session() as session:
        made = await tenancy.create_project_with_keys(
            session, PEPPER, platform_id, name=name, mode=mode, type=type, **settings
        )
        for spec in tiers:
            await catalog.create_tier(session, made.project, TierCreate(**spec))
        return Keys(
            made.project.id,
            platform_id,
            made.publishable.plaintext,
            made.secret.plaintext,
            made.publishable.key.id,
            made.secret.key.id,
        )


async def set_project(client: httpx.AsyncClient, project_id: str, **values: Any) -> None:
    async with database(client).session() as session:
        await session.execute(update(Project).where(Project.id == project_id).values(**values))


async def create_customer(
    client: httpx.AsyncClient, keys: Keys, email: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/customers", json={"email": email, **fields}, headers=keys.secret
    )
    assert response.status_code == 201, response.text
    customer: dict[str, Any] = response.json()["customer"]
    return customer


async def user_token(client: httpx.AsyncClient, keys: Keys, customer_id: str) -> str:
    response = await client.post(f"/api/customers/{customer_id}/token", headers=keys.secret)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


async def end_user(
    client: httpx.AsyncClient, keys: Keys, email: str = "u@example.com", plan: str = "free"
) -> dict[str, str]:
    """Headers of a fresh end user calling with the publishable key."""
    customer = await create_customer(client, keys, email, plan=plan)
    token = await user_token(client, keys, customer["id"])
    return {**keys.publishable, "X-Clerk-Token": token}
