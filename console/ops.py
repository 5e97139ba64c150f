"""The ops pages: the webhook inbox (filter, page, replay a failed event), the flow runs that failed lately
(links into the Prefect UI), one contact's suppressions and consent (add one, lift a staff one; record or
withdraw the patient's marketing consent; never lift the patient's own STOP), and the plan's KPIs for a
clinic-local day.

Each page does what the CLI does, through the same domain functions: `inbox.ops.replay` (`events replay`),
`messaging.consent_lookup.staff_change` and `marketing_change` over `messaging.consent` (`suppress
add|remove`, `consent grant|withdraw`), `reporting.kpis` (`report`). No page shows an event's body or a
patient's name; the consent page shows one contact's consent state, and every lookup and every change is an
access-audit row.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from console import security
from console.pages import page
from inbox import ops as inbox_ops
from messaging import consent
from messaging.consent_lookup import (
    Address,
    AddressError,
    StaffChange,
    action_for,
    lookup,
    marketing_change,
    parse_address,
    staff_change,
    staff_source,
)
from models import Settings, session_scope
from models.access_audit import record
from models.types import utcnow
from operations.failed_runs import FailedRuns, failed_runs
from reporting.flow_runs import flow_run_counts
from reporting.kpis import TARGETS, clinic_day, clinic_timezone, kpis, reader, yesterday
from reporting.report import COUNTS, value_cell

Query = Annotated[str | None, QueryParameter(required=False)]
MarkQuery = Annotated[int | None, QueryParameter(required=False, gt=0)]
DateQuery = Annotated[str | None, QueryParameter(name="date", required=False)]
PREFECT_TIMEOUT = 10.0


# --- the inbox ---------------------------------------------------------------------------------------


def _event_filter(status: str | None, source: str | None) -> inbox_ops.EventFilter:
    status = (status or "").strip() or None
    return inbox_ops.EventFilter(
        status=status if status in inbox_ops.STATUSES else None, source=(source or "").strip() or None
    )


def _events_page(
    request: Request,
    filters: inbox_ops.EventFilter,
    before: int | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Template:
    with session_scope() as session:
        found = inbox_ops.page(session, filters, before)
    query = {**filters.as_form(), "before": found.next_before} if found.next_before else None
    zone = request.app.state.console_settings.clinic_timezone
    return page(
        request,
        "ops_events.html",
        status_code=status_code,
        rows=found.rows,
        filters=filters,
        statuses=inbox_ops.STATUSES,
        sources=inbox_ops.SOURCES,
        older=urlencode(query) if query else None,
        current=urlencode(filters.as_form()),
        paged=before is not None,
        zone=zone,
        **extra,
    )


@get("/ops/events", sync_to_thread=True)
def ops_events(
    request: Request,
    status: Query = None,
    source: Query = None,
    before: MarkQuery = None,
    replayed: MarkQuery = None,
) -> Template:
    """The inbox, newest first, 50 a page (keyset: `before=<id>`), filtered by status and source."""
    return _events_page(request, _event_filter(status, source), before, replayed=replayed)


@post("/ops/events/replay", status_code=303)
async def ops_replay(request: Request) -> Redirect | Template:
    """Replay a failed event (`inbox.ops.replay`, as `avatar-crm events replay`), with the reason ops gave;
    audited, a refusal too."""
    actor = security.current_actor(request)
    form = await request.form()
    filters = _event_filter(form.get("status"), form.get("source"))
    raw_id = str(form.get("event_id") or "").strip()
    reason = str(form.get("reason") or "").strip()

    def refused(why: str, status_code: int) -> Template:
        return _events_page(request, filters, status_code=status_code, error=why)

    if not raw_id.isdigit():
        return await asyncio.to_thread(refused, "which event? (no event id)", 400)
    event_id = int(raw_id)
    if not reason:
        return await asyncio.to_thread(refused, f"say why event {event_id} is replayed (the reason)", 400)

    def replay() -> str | None:
        try:
            with session_scope() as session:
                inbox_ops.replay(session, event_id, actor=actor, reason=reason, allowed=inbox_ops.FAILED_ONLY)
        except inbox_ops.ReplayRefused as exc:
            security.audit(
                actor,
                action="inbox_event.replayed",
                outcome="denied",
                subject=f"inbox_event:{event_id}",
                reason=reason,
                refusal=str(exc),
            )
            return str(exc)
        return None

    refusal = await asyncio.to_thread(replay)
    if refusal is not None:
        return await asyncio.to_thread(refused, f"not replayed: {refusal}", 409)
    dispatcher = request.app.state.get("dispatcher")
    if dispatcher is not None:  # hand it over now rather than at the next poll
        dispatcher.wake()
    query = urlencode({**filters.as_form(), "replayed": event_id})
    return Redirect(f"/console/ops/events?{query}", status_code=303)


# --- flow runs ---------------------------------------------------------------------------------------


@get("/ops/runs")
async def ops_runs(request: Request) -> Template:
    """Flow runs that failed or crashed in the last 7 days, newest first, each linked into the Prefect UI;
    Prefect not answering is said on the page."""
    client = request.app.state.get("prefect")
    if client is None:
        found = FailedRuns([], utcnow(), "the gateway has no Prefect API client")
    else:
        found = await failed_runs(client, wait_seconds=PREFECT_TIMEOUT)
    zone = request.app.state.console_settings.clinic_timezone
    return page(request, "ops_runs.html", found=found, zone=zone)


# --- suppressions and consent -----------------------------------------------------------------------


def _consent_page(request: Request, status_code: int = 200, **context: Any) -> Template:
    zone = request.app.state.console_settings.clinic_timezone
    return page(request, "ops_consent.html", status_code=status_code, zone=zone, **context)


@get("/ops/consent")
async def ops_consent(request: Request) -> Template:
    """The lookup form (a POST, so a phone number or email never sits in a URL or the browser's history)."""
    return _consent_page(request)


async def _address(request: Request) -> tuple[dict[str, str], Address | None, str | None]:
    form = {key: str(value) for key, value in (await request.form()).items() if key != "_csrf_token"}
    settings: Settings = request.app.state.console_settings
    try:
        return form, parse_address(form.get("address", ""), settings.default_phone_region), None
    except AddressError as exc:
        return form, None, str(exc)


def _read_state(address: Address) -> Any:
    with session_scope() as session:
        return lookup(session, address)


@post("/ops/consent")
async def ops_consent_lookup(request: Request) -> Template:
    """One address's suppressions and consent history: a read of a patient's details, audited."""
    actor = security.current_actor(request)
    form, address, problem = await _address(request)
    if address is None:
        return _consent_page(request, status_code=400, typed=form.get("address", ""), error=problem)

    def read() -> Any:
        with session_scope() as session:
            state = lookup(session, address)
            record(
                session,
                actor,
                action="consent.viewed",
                subject=f"contact:{state.contact_id}" if state.contact_id is not None else None,
                kind=address.kind,
                suppressions=len(state.suppressions),
            )
            return state

    state = await asyncio.to_thread(read)
    return _consent_page(request, state=state, typed=form.get("address", ""))


Change = Literal["suppress", "lift", "grant", "withdraw"]
# What the page says after each change: (it changed something, it found nothing to change).
_DONE: dict[Change, tuple[str, str]] = {
    "suppress": ("suppressed", "already suppressed"),
    "lift": ("lifted", "there was nothing to lift"),
    "grant": ("marketing consent recorded", "marketing consent was already recorded"),
    "withdraw": ("marketing consent withdrawn", "there was no marketing consent to withdraw"),
}


def _apply(session: Any, address: Address, change: Change, why: consent.ConsentSource) -> StaffChange:
    if change in ("grant", "withdraw"):
        return marketing_change(session, address, granted=change == "grant", why=why)
    return staff_change(session, address, lift=change == "lift", why=why)


async def _change(request: Request, change: Change) -> Template:
    """Add or lift a suppression, or record or withdraw marketing consent, as the CLI does; the patient's own
    opt-out refuses a lift or an opt-in (nothing changed, the refusal in the consent ledger and the access
    audit as denied)."""
    actor = security.current_actor(request)
    form, address, problem = await _address(request)
    typed, note = form.get("address", ""), form.get("note", "").strip()
    if address is None:
        return _consent_page(request, status_code=400, typed=typed, error=problem)
    opening = change in ("lift", "grant")  # lets messages through again: needs a note of how they agreed
    try:
        why = staff_source(actor.email, note, lift=opening)
    except AddressError as exc:
        state = await asyncio.to_thread(_read_state, address)
        return _consent_page(request, status_code=400, state=state, typed=typed, error=str(exc))
    if change in ("grant", "withdraw"):
        action = "consent.granted" if change == "grant" else "consent.withdrawn"
    else:
        action = action_for(address, lift=opening)

    def apply() -> tuple[int, str | None, str | None]:
        """(status code, error, done) of the change, each written to the audit."""
        try:
            with session_scope() as session:
                made = _apply(session, address, change, why)
                record(
                    session,
                    actor,
                    action=action,
                    subject=f"contact:{made.contact_id}" if made.contact_id is not None else None,
                    reason=why.wording,
                    changed=made.changed,
                    channel=address.channel.value,
                )
        except consent.ConsentRefused as refused:
            with session_scope() as session:
                consent.record_refusal(session, refused)
                record(
                    session,
                    actor,
                    action=action,
                    subject=f"contact:{refused.contact_id}" if refused.contact_id is not None else None,
                    outcome="denied",
                    reason=why.wording,
                    channel=address.channel.value,
                )
            return 409, f"refused, nothing changed: {refused.reason}", None
        except AddressError as exc:
            return 400, str(exc), None
        done = _DONE[change][0 if made.changed else 1]
        if made.still_blocked:
            done += f"; marketing still cannot reach the patient: {made.still_blocked}"
        return 200, None, done

    status_code, error, done = await asyncio.to_thread(apply)
    state = await asyncio.to_thread(_read_state, address)
    return _consent_page(request, status_code=status_code, state=state, typed=typed, error=error, done=done)


@post("/ops/consent/suppress")
async def ops_consent_suppress(request: Request) -> Template:
    return await _change(request, "suppress")


@post("/ops/consent/lift")
async def ops_consent_lift(request: Request) -> Template:
    return await _change(request, "lift")


@post("/ops/consent/marketing")
async def ops_consent_marketing(request: Request) -> Template:
    """The patient's consent to marketing on the looked-up address's channel (the paper form's SMS-offers
    box), recorded or withdrawn: the form's `decision` says which."""
    decision = str((await request.form()).get("decision", ""))
    if decision not in ("grant", "withdraw"):
        return _consent_page(request, status_code=400, error="choose to record or to withdraw consent")
    return await _change(request, "grant" if decision == "grant" else "withdraw")


# --- KPIs ---------------------------------------------------------------------------------------------


@get("/ops/kpis")
async def ops_kpis(request: Request, day: DateQuery = None) -> Template:
    """The plan's KPIs for one clinic-local day (default yesterday) against the targets; counts only."""
    settings: Settings = request.app.state.console_settings
    tz = clinic_timezone(settings)
    try:
        chosen = date.fromisoformat(day) if day else yesterday(tz)
    except ValueError:
        problem = "the date is YYYY-MM-DD"
        return page(request, "ops_kpis.html", status_code=400, error=problem, day=None, targets=[], counts=[])
    window = clinic_day(chosen, tz)
    found = await asyncio.to_thread(kpis, window, reader(settings.crm_database_url))
    client = request.app.state.get("prefect")
    runs = None
    if client is not None:  # None (not measured) when Prefect does not answer
        try:
            runs = await asyncio.wait_for(flow_run_counts([window], client), PREFECT_TIMEOUT)
        except TimeoutError:
            runs = None
    found = dataclasses.replace(found, flow_runs=runs[0] if runs else None)
    targets = [
        (target.label, target.describe(), value_cell(target, found), target.verdict(found.value(target.key)))
        for target in TARGETS
    ]
    counts = [(label, read(found)) for label, read in COUNTS]
    return page(request, "ops_kpis.html", day=chosen, targets=targets, counts=counts, window=found.window)
