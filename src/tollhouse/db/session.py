"""The request-scoped session: one unit of work per request, committed before the response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.engine import Database
from tollhouse.kit.errors import TollhouseError


def database(request: Request) -> Database:
    return cast(Database, request.app.state.database)


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with database(request).sessions() as session:
        try:
            yield session
        except TollhouseError as exc:
            # Some refusals must remember what they found (a reused refresh token revokes
            # its family); they say so, and their writes are kept.
            if exc.keeps_writes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": the commit happens before the response is sent, so a client never sees
# success for work that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]
