"""Retention: what the CRM stops keeping, and when (the `retention` deployment, `avatar-crm retention run`).

Purged are the parts that carry what patients wrote or were told, once nothing needs them any more:
- a stored webhook's body (booking details, an SMS reply) `RETENTION_INBOX_DAYS` after it arrived, once it is
  processed or failed: the row stays with its source, dedupe key, subject, revision, status and flow run id,
  so a redelivery of the same event still hits the unique key and is answered as a duplicate;
- an outbox message's text `RETENTION_MESSAGE_DAYS` after it was written, once final (sent, delivered,
  failed, dropped …): the row stays with its idempotency key, recipient, status and times, so nothing is
  sent twice and delivery receipts still find it;
- a staff task's copy of the patient's reply and the note written when it was done,
  `RETENTION_MESSAGE_DAYS` after it was done (an open task keeps them: someone must still act on it);
- OAuth sign-in states (the PKCE verifier and the ticket id) `RETENTION_OAUTH_HOURS` after they were made,
  never before the connect ticket itself has expired (its id is what refuses a second use).
Rows are emptied in batches of `batch` (short write transactions beside the live system); a dry run counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from models.db import session_scope
from models.enums import InboxStatus, MessageStatus, StaffTaskStatus
from models.google import OAuthState
from models.inbox import WebhookEvent
from models.outbox import OutboundMessage
from models.settings import Settings
from models.staff_task import StaffTask

TICKET_LIFETIME = timedelta(minutes=15)  # providers/google_oauth.TICKET_TTL_SECONDS (a layer above)
PENDING_MESSAGES = (MessageStatus.PENDING, MessageStatus.SENDING)


def _purge_rows(model: Any, where: list[Any], values: dict[str, Any], dry_run: bool, batch: int) -> int:
    """Set `values` on the rows matching `where`, `batch` rows a transaction; how many (would) change."""
    if dry_run:
        with session_scope() as session:
            return int(session.execute(select(func.count()).select_from(model).where(*where)).scalar_one())
    total = 0
    while True:
        with session_scope() as session:
            ids = list(
                session.execute(select(model.id).where(*where).order_by(model.id).limit(batch)).scalars()
            )
            if not ids:
                return total
            session.execute(update(model).where(model.id.in_(ids)).values(**values))
        total += len(ids)


def purge(now: datetime, settings: Settings, *, dry_run: bool = False, batch: int = 1000) -> dict[str, int]:
    """Purge what is past its retention period at `now`; counts per kind (what a dry run would purge)."""
    counts = {"inbox_bodies": 0, "message_texts": 0, "oauth_states": 0, "task_texts": 0}
    if settings.retention_inbox_days > 0:
        cutoff = now - timedelta(days=settings.retention_inbox_days)
        counts["inbox_bodies"] = _purge_rows(
            WebhookEvent,
            [
                WebhookEvent.purged_at.is_(None),  # type: ignore[union-attr]
                WebhookEvent.received_at < cutoff,  # type: ignore[operator]
                WebhookEvent.status.in_([InboxStatus.PROCESSED, InboxStatus.FAILED]),  # type: ignore[attr-defined]
            ],
            {"body": b"", "purged_at": now},
            dry_run,
            batch,
        )
    if settings.retention_message_days > 0:
        cutoff = now - timedelta(days=settings.retention_message_days)
        counts["message_texts"] = _purge_rows(
            OutboundMessage,
            [
                OutboundMessage.purged_at.is_(None),  # type: ignore[union-attr]
                OutboundMessage.created_at < cutoff,  # type: ignore[operator]
                OutboundMessage.status.not_in(PENDING_MESSAGES),  # type: ignore[attr-defined]
            ],
            {"body": "", "purged_at": now},
            dry_run,
            batch,
        )
    if settings.retention_message_days > 0:
        cutoff = now - timedelta(days=settings.retention_message_days)
        counts["task_texts"] = _purge_rows(
            StaffTask,
            [
                StaffTask.status == StaffTaskStatus.DONE,
                StaffTask.done_at < cutoff,  # type: ignore[operator]
                or_(StaffTask.reply_text.is_not(None), StaffTask.done_note.is_not(None)),  # type: ignore[union-attr]
            ],
            {"reply_text": None, "done_note": None},
            dry_run,
            batch,
        )
    if settings.retention_oauth_hours > 0:
        cutoff = now - max(timedelta(hours=settings.retention_oauth_hours), TICKET_LIFETIME)
        old = OAuthState.created_at < cutoff  # type: ignore[operator]
        with session_scope() as session:
            if dry_run:
                counts["oauth_states"] = int(
                    session.execute(select(func.count()).select_from(OAuthState).where(old)).scalar_one()
                )
            else:
                counts["oauth_states"] = int(session.execute(delete(OAuthState).where(old)).rowcount)  # type: ignore[attr-defined]
    return counts
