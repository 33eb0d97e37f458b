"""The request-scoped session: one unit of work per request, committed before the response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.engine import Database
from tollhouse.kit.errors import TollhouseError


def database(request: Request) -> Database:
    return cast(Database, request.app.state.database)


@asynccontextmanager
async def unit_of_work(db: Database) -> AsyncIterator[AsyncSession]:
    """One request's unit of work: committed when the block ends cleanly, rolled back on an
    error (unless the error says it keeps its writes)."""
    # A session that never ran a statement holds no connection: it is neither committed nor
    # closed, so requests answered from caches pay nothing for it.
    session = db.sessions()
    try:
        yield session
    except TollhouseError as exc:
        # Some refusals must remember what they found (a reused refresh token revokes its
        # family); they say so, and their writes are kept.
        if exc.keeps_writes:
            await session.commit()
        elif session.in_transaction():
            await session.rollback()
        raise
    except BaseException:
        if session.in_transaction():
            await session.rollback()
        raise
    else:
        if session.in_transaction():
            await session.commit()


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(database(request)) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a client never sees
# success for work that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]
