"""Outgoing mail: through SMTP when SMTP_HOST is set, else into the local outbox table.

The outbox is what a development machine "sends": `/dev/mail` (web) shows it, so sign-up
verification and password reset can be followed without a mail server. In production the page
is not served; a server started there without SMTP_HOST says so in its log at start, and the
messages stay in the table for the operator.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import anyio.to_thread
from sqlalchemy import String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt

OUTBOX_PAGE = 50


class OutboxMessage(CreatedAt, Base):
    """A message a development server would have sent."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True, slots=True)
class Mail:
    recipient: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, session: AsyncSession, mail: Mail) -> None: ...


class OutboxMailer:
    """Stores the message in the request's transaction: a rolled-back request sent nothing."""

    async def send(self, session: AsyncSession, mail: Mail) -> None:
        session.add(OutboxMessage(recipient=mail.recipient, subject=mail.subject, body=mail.body))
        await session.flush()


@dataclass(frozen=True, slots=True)
class SmtpMailer:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    timeout_seconds: float = 10.0

    async def send(self, session: AsyncSession, mail: Mail) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.recipient
        message["Subject"] = mail.subject
        message.set_content(mail.body)
        await anyio.to_thread.run_sync(self._send_sync, message)

    def _send_sync(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username and self.password:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


async def outbox(session: AsyncSession, recipient: str | None = None) -> Sequence[OutboxMessage]:
    """The newest messages first, optionally to one address."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(OUTBOX_PAGE)
    if recipient:
        query = query.where(OutboxMessage.recipient == recipient.strip().lower())
    return list(await session.scalars(query))
