"""A project's allowed origins: where its browsers call from and where its hosted pages may
send people back to (with a token in the URL, so never anywhere else: no open redirect).

An origin is `scheme://host[:port]`, https, or http on a loopback host for development.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.dialect import insert_ignoring_conflicts
from tollhouse.kit.clock import utcnow
from tollhouse.kit.errors import BadRequest, Conflict
from tollhouse.kit.ssrf import UrlNotAllowed
from tollhouse.tenancy.models import ProjectOrigin

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
MAX_ORIGINS = 50
URL_MAX = 2048


class InvalidOrigin(BadRequest):
    code = "invalid_origin"
    message = "An origin is https://host[:port] (http only on localhost), with no path."


class TooManyOrigins(Conflict):
    code = "too_many_origins"
    message = f"A project allows at most {MAX_ORIGINS} origins."


class RedirectNotAllowed(BadRequest):
    code = "redirect_not_allowed"
    message = "This redirect's origin is not one the project allows."


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL we would send people to, else None."""
    if len(url) > URL_MAX:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        return None
    if parts.scheme != "https" and not (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else "")


def normalise(origin: str) -> str:
    """The canonical form of an origin a developer typed; InvalidOrigin when it has more."""
    text = origin.strip().rstrip("/")
    canonical = origin_of(text)
    if canonical is None or urlsplit(text).path or "?" in text or "#" in text:
        raise InvalidOrigin()
    return canonical


async def origins_of(session: AsyncSession, project_id: str) -> Sequence[str]:
    rows = await session.scalars(
        select(ProjectOrigin.origin)
        .where(ProjectOrigin.project_id == project_id)
        .order_by(ProjectOrigin.id)
    )
    return list(rows)


async def allow(session: AsyncSession, project_id: str, origin: str) -> str:
    """Add an origin (adding it twice is a no-op); its canonical form."""
    canonical = normalise(origin)
    count = await session.scalar(
        select(func.count())
        .select_from(ProjectOrigin)
        .where(ProjectOrigin.project_id == project_id)
    )
    if (count or 0) >= MAX_ORIGINS:
        raise TooManyOrigins()
    await session.execute(
        insert_ignoring_conflicts(session, ProjectOrigin).values(
            project_id=project_id, origin=canonical, created_at=utcnow()
        )
    )
    return canonical


async def disallow(session: AsyncSession, project_id: str, origin: str) -> None:
    await session.execute(
        delete(ProjectOrigin).where(
            ProjectOrigin.project_id == project_id, ProjectOrigin.origin == normalise(origin)
        )
    )


async def is_allowed(session: AsyncSession, project_id: str, origin: str | None) -> bool:
    canonical = origin_of(origin) if origin else None
    if canonical is None:
        return False
    found = await session.scalar(
        select(ProjectOrigin.id).where(
            ProjectOrigin.project_id == project_id, ProjectOrigin.origin == canonical
        )
    )
    return found is not None


async def checked_redirect(session: AsyncSession, project_id: str, url: str) -> str:
    """`url` when it is absolute and its origin is on the project's list, else 400."""
    if not await is_allowed(session, project_id, url if origin_of(url) else None):
        raise RedirectNotAllowed()
    return url.strip()


def is_relative(url: str) -> bool:
    """A path on the caller's own site (`/dashboard`), not `//host` (scheme-relative)."""
    return url.startswith("/") and not url.startswith("//") and "\\" not in url


async def absolute(
    session: AsyncSession, project_id: str, url: str, origin: str | None, field: str
) -> str:
    """A relative `url` resolved against the request's `Origin`, when the project allows that
    origin (the SDK's examples pass `/dashboard`); an absolute `url` unchanged."""
    if not is_relative(url):
        return url
    if not await is_allowed(session, project_id, origin):
        raise UrlNotAllowed(
            f"{field} is relative: call from a page whose Origin the project allows "
            "(console: allowed origins), or send an absolute URL."
        )
    base = origin_of(origin or "")
    assert base is not None, "an allowed origin is a well-formed one"
    return base + url
