"""Reading the access audit for an admin: filters, newest first, keyset pages and a CSV export.

A page is "the 100 newest rows matching the filters older than row `before`", newest by (at, id): a keyset,
so paging never repeats or skips a row however many are appended meanwhile, and no query counts the table or
skips rows with OFFSET (both cost time in proportion to the table, a million rows and growing). Ordering by
time rather than by id alone lets a date range read from the `at` index too (appends are serialised, so the
two orders agree unless the clock stepped back). Each equality filter has an index that leads with it and ends
with (at, id) (migration 0018), so a filtered page reads its 100 rows from one index in order.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, tuple_
from sqlmodel import Session, col, select

from models import AccessAudit, session_scope
from models.access_audit import Actor, record

PAGE = 100
EXPORT_BATCH = 1000
CSV_COLUMNS = (
    "id",
    "at",
    "actor",
    "role",
    "client_address",
    "action",
    "subject",
    "outcome",
    "reason",
    "detail",
)


@dataclass(frozen=True)
class AuditFilter:
    """What an admin narrowed the log to; empty fields do not filter. Dates are UTC days, `to` inclusive."""

    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    outcome: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def as_form(self) -> dict[str, str]:
        """The filters as the GET form's fields (for the next page's and the export's links)."""
        names = {"date_from": "from", "date_to": "to"}
        return {names.get(k, k): str(v) for k, v in asdict(self).items() if v}

    def as_detail(self) -> dict[str, str]:
        """The filters as the export's audit row records them (only those set)."""
        return {k: str(v) for k, v in asdict(self).items() if v}


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True)
class AuditPage:
    rows: list[AccessAudit]
    next_before: int | None  # the `before=` of the next (older) page; None on the last page


def page(session: Session, filters: AuditFilter, before: int | None = None, size: int = PAGE) -> AuditPage:
    """One page of matching rows, newest first (by time, then id), older than row `before`. Reads size + 1
    rows to know whether more follow."""
    query = select(AccessAudit).where(*_where(filters))
    if before is not None:
        mark = session.get(AccessAudit, before)
        if mark is None:  # an id typed by hand that is not there: the rows below it
            query = query.where(col(AccessAudit.id) < before)
        else:
            query = query.where(tuple_(AccessAudit.at, AccessAudit.id) < (mark.at, mark.id))
    newest = (col(AccessAudit.at).desc(), col(AccessAudit.id).desc())
    rows = list(session.exec(query.order_by(*newest).limit(size + 1)).all())
    more = len(rows) > size
    rows = rows[:size]
    return AuditPage(rows, rows[-1].id if more and rows else None)


def _where(filters: AuditFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    for name in ("actor", "action", "subject", "outcome"):
        value = getattr(filters, name)
        if value:
            found.append(col(getattr(AccessAudit, name)) == value)
    if filters.date_from:
        found.append(col(AccessAudit.at) >= _utc_midnight(filters.date_from))
    if filters.date_to:
        found.append(col(AccessAudit.at) < _utc_midnight(filters.date_to + timedelta(days=1)))
    return found


def record_export(session: Session, filters: AuditFilter, *, actor: Actor) -> int:
    """The export is itself an access: one row naming the filters, written before any row is sent.
    Returns its id (the export holds the rows before it)."""
    row = record(
        session,
        actor,
        action="audit.exported",
        filters=filters.as_detail(),
    )
    return row.id or 0


def _cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (a reason typed as "=HYPERLINK(...)") is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([_cell(v) for v in values])
    return buffer.getvalue()


def export_csv(filters: AuditFilter, before: int | None = None) -> Iterator[str]:
    """The matching rows as CSV, newest first, in batches read by keyset (each batch its own short read, so
    a long download holds no transaction open). `before`: only rows older than this one (the export's own
    row: the file is what was there when it was asked for)."""
    yield _csv_line(list(CSV_COLUMNS))
    while True:
        with session_scope() as session:
            batch = page(session, filters, before, EXPORT_BATCH)
            lines = [
                _csv_line(
                    [
                        r.id,
                        r.at.isoformat(),
                        r.actor,
                        r.role,
                        r.client_address or "",
                        r.action,
                        r.subject or "",
                        r.outcome,
                        r.reason or "",
                        _json(r.detail),
                    ]
                )
                for r in batch.rows
            ]
        if lines:
            yield "".join(lines)
        if batch.next_before is None:
            return
        before = batch.next_before


def _json(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
