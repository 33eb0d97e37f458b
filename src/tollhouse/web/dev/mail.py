"""`/dev/mail`: the local outbox — what this server would have mailed (no SMTP configured).
Not served in production, where mail goes through SMTP."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import identity_context
from tollhouse.kit import mail
from tollhouse.kit.errors import NotFound
from tollhouse.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/dev/mail")
async def outbox(request: Request, session: SessionDep, to: str | None = None) -> HTMLResponse:
    if identity_context(request).settings.is_production:
        raise NotFound()
    recipient = to[:320] if to else None
    messages = await mail.outbox(session, recipient)
    return render(request, "dev/mail.html", messages=messages, recipient=recipient)
