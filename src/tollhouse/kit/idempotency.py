"""`Idempotency-Key` for POSTs that move money, built once for every domain.

Insert-first: the record `(scope, key)` is inserted in the request's own transaction before
the work runs and receives the response in that same transaction. A concurrent duplicate
blocks on the unique index until the first commits (PostgreSQL) or waits for the write lock
(SQLite), then finds the stored response and replays it. If the first request fails, its
record rolls back with its work and the key is free again.

A metered call with a key is a hot path (`POST /api/data`), so the record costs two Core
statements built once per dialect and run on the session's connection (the claim, an upsert
that also takes over an expired record, and the stored response), with no ORM unit of work
or statement construction per request: about half the CPU of the ORM spelling.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import (
    Executable,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.db.session import SessionDep
from tollhouse.kit.clock import utcnow
from tollhouse.kit.errors import BadRequest, Conflict

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
DEFAULT_TTL = timedelta(hours=24)
_ACCEPTABLE_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


class IdempotencyRecord(CreatedAt, Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(index=True)


_records = cast(Table, IdempotencyRecord.__table__)


def _claim_statement(dialect: Any) -> Executable:
    """One statement: a new key is inserted, an expired record of the same key is taken
    over, a live one is left alone (no row returned: replay it)."""
    claim = dialect.insert(_records).values(
        scope=bindparam("scope"),
        key=bindparam("key"),
        request_hash=bindparam("request_hash"),
        status_code=None,
        response_body=None,
        created_at=bindparam("now"),
        expires_at=bindparam("expires_at"),
    )
    fresh = claim.excluded
    upsert: Executable = claim.on_conflict_do_update(
        index_elements=["scope", "key"],
        set_={
            "request_hash": fresh.request_hash,
            "status_code": None,
            "response_body": None,
            "created_at": fresh.created_at,
            "expires_at": fresh.expires_at,
        },
        where=_records.c.expires_at < fresh.created_at,
    ).returning(_records.c.id)
    return upsert


_CLAIM = {"postgresql": _claim_statement(postgresql), "sqlite": _claim_statement(sqlite)}
_STORE = (
    update(_records)
    .where(_records.c.id == bindparam("record"))
    .values(status_code=bindparam("status"), response_body=bindparam("body"))
)
_FIND = select(_records.c.request_hash, _records.c.status_code, _records.c.response_body).where(
    _records.c.scope == bindparam("scope"), _records.c.key == bindparam("key")
)


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was already used with a different request."


class IdempotencyInProgress(Conflict):
    code = "idempotency_request_in_progress"
    message = "A request with this Idempotency-Key is still being processed; retry shortly."


class InvalidIdempotencyKey(BadRequest):
    code = "invalid_idempotency_key"
    message = "Idempotency-Key must be 1 to 200 printable ASCII characters."


class Idempotency:
    """What a route gets: `await idempotency.run(scope, work)` runs `work` at most once."""

    def ledger_key(self, operation: str) -> str | None:
        """The key as the ledger stores it: per operation, so a grant never answers a spend."""
        return f"{operation}:{self.key}" if self.key is not None else None

    def __init__(self, request: Request, session: AsyncSession) -> None:
        self.request = request
        self.session = session
        self.key = request.headers.get(HEADER)
        if self.key is not None and not _ACCEPTABLE_KEY.match(self.key):
            raise InvalidIdempotencyKey()

    async def run(self, scope: str, work: Callable[[], Awaitable[Any]]) -> Any:
        if self.key is None:
            return await work()
        full_scope = f"{scope}|{self.request.method} {self.request.url.path}"[:255]
        fingerprint = hashlib.sha256(await self.request.body()).hexdigest()
        connection = await self.session.connection()
        now = utcnow()
        claim = _CLAIM[connection.dialect.name]
        claimed = await connection.execute(
            claim,
            {
                "scope": full_scope,
                "key": self.key,
                "request_hash": fingerprint,
                "now": now,
                "expires_at": now + DEFAULT_TTL,
            },
        )
        record_id = claimed.scalar()
        if record_id is None:
            return await self._replay(full_scope, fingerprint)
        result = await work()
        # `default` only sees what JSON has no type for: a plain dict costs no encoder walk.
        body = json.dumps(result, default=jsonable_encoder)
        # Asked again: work that committed leaves the session on a new transaction.
        connection = await self.session.connection()
        await connection.execute(_STORE, {"record": record_id, "status": 200, "body": body})
        return result

    async def _replay(self, scope: str, fingerprint: str) -> JSONResponse:
        connection = await self.session.connection()
        found = await connection.execute(_FIND, {"scope": scope, "key": self.key})
        record = found.one_or_none()
        if record is None or record.response_body is None or record.status_code is None:
            raise IdempotencyInProgress()
        if record.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        return JSONResponse(
            json.loads(record.response_body),
            status_code=record.status_code,
            headers={REPLAYED_HEADER: "true"},
        )


async def idempotency(request: Request, session: SessionDep) -> Idempotency:
    return Idempotency(request, session)


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]


async def purge_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
