"""`avatar-crm campaign …` and `avatar-crm consent …`: launch and follow marketing campaigns, and record a
patient's marketing consent (campaigns only ever go to patients with it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from deployments.prefect_api import prefect_api

campaign_app = typer.Typer(
    help="Marketing campaigns (email by SendGrid, SMS by MobileMessage).", no_args_is_help=True
)
consent_app = typer.Typer(help="Patients' marketing consent.", no_args_is_help=True)
tag_app = typer.Typer(
    help="Marketing tags on patients (campaign audiences can filter on them).", no_args_is_help=True
)


def _run_url(flow_run_id: str) -> str:
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else flow_run_id


def _create_run(deployment: str, parameters: dict[str, Any], scheduled_time: Any = None) -> str:
    from prefect.deployments import run_deployment

    async def _run() -> str:
        run = await run_deployment(
            deployment, parameters=parameters, scheduled_time=scheduled_time, timeout=0
        )
        return str(run.id)

    try:
        return asyncio.run(_run())
    except Exception as exc:  # the deployment is not served
        typer.echo(
            f"could not start {deployment}: {type(exc).__name__}: {exc}\n"
            "Is the flow runner of `make up` (or `avatar-crm serve`) running? Or use --local.",
            err=True,
        )
        raise typer.Exit(1) from None


def _print_result(result: dict[str, Any]) -> None:
    shown = {k: v for k, v in result.items() if k not in ("results", "preview")}
    typer.echo(json.dumps(shown, indent=2, default=str))
    if result.get("preview"):
        typer.echo(result["preview"])
    for row in result.get("results") or []:
        typer.echo("  " + "  ".join(f"{k}={v}" for k, v in row.items()))


@campaign_app.command("launch")
def launch(
    file: Annotated[Path, typer.Argument(help="The campaign YAML (see deployments/campaign.example.yaml).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count and preview only; send nothing.")] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Run in this process instead of the deployment.")
    ] = False,
) -> None:
    """Launch a campaign: a run of the campaign-send deployment (at `send_at`, if the file sets one)."""
    from campaigns.campaign import launch_refusal
    from campaigns.spec import CampaignFileError, load_spec
    from models import get_settings

    try:
        spec = load_spec(file)
    except CampaignFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if dry_run:
        spec = spec.model_copy(update={"dry_run": True})
    refusal = launch_refusal(spec, get_settings())  # here, not in the run
    if refusal is not None:
        typer.echo(f"campaign {spec.slug} not launched: {refusal}", err=True)
        raise typer.Exit(2)
    if local:
        from flows.campaign_send import campaign_send

        with prefect_api("temporary"):
            _print_result(asyncio.run(campaign_send(spec)))
        return
    from flows.campaign_send import SEND_DEPLOYMENT, send_run_arguments

    parameters, when = send_run_arguments(spec)
    with prefect_api():
        run_id = _create_run(SEND_DEPLOYMENT, parameters, when)
        what = "dry run" if spec.dry_run else "campaign"
        typer.echo(
            f"{what} {spec.slug}: flow run {run_id}" + (f" scheduled for {when.isoformat()}" if when else "")
        )
        typer.echo(_run_url(run_id))


@campaign_app.command("status")
def status(slug: str) -> None:
    """Where a campaign is, and per variant how many were sent, delivered, opened, clicked, bounced, …"""
    from campaigns.bulk_outbox import results_table
    from campaigns.campaign import CampaignError, load_campaign

    try:
        state = load_campaign(slug)
    except CampaignError as exc:
        raise typer.BadParameter(str(exc)) from None
    from models import Campaign, session_scope

    with session_scope() as session:
        row = session.get(Campaign, state.id)
        assert row is not None
        typer.echo(f"{row.name} ({row.slug}), {row.channel}: {row.status}")
        if row.winner_variant or row.winner_reason:
            typer.echo(f"winner: {row.winner_variant or 'not chosen'} — {row.winner_reason or ''}")
        if row.flow_run_id:
            with prefect_api("temporary"):  # the stack's UI link when it is up, else the run id
                typer.echo(f"last run: {_run_url(row.flow_run_id)}")
    table = results_table(state.id)
    if not table:
        typer.echo("nothing queued yet")
    for line in table:
        typer.echo("  " + "  ".join(f"{k}={v}" for k, v in line.items()))


def _winner_run(slug: str, winner: str | None, local: bool) -> None:
    from campaigns.campaign import CampaignError, check_winner_request, load_campaign
    from flows.campaign_send import WINNER_DEPLOYMENT, campaign_winner

    try:  # refuse here, not in a run that would only fail
        check_winner_request(load_campaign(slug), winner)
    except CampaignError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if local:
        with prefect_api("temporary"):
            _print_result(asyncio.run(campaign_winner(campaign=slug, winner=winner)))
        return
    with prefect_api():
        run_id = _create_run(WINNER_DEPLOYMENT, {"campaign": slug, "winner": winner})
        typer.echo(f"campaign-winner for {slug}: flow run {run_id}")
        typer.echo(_run_url(run_id))


@campaign_app.command("choose")
def choose(
    slug: str,
    variant: Annotated[str, typer.Argument(help="The variant the rest of the audience gets (A, B, …).")],
    local: Annotated[bool, typer.Option("--local", help="Run in this process.")] = False,
) -> None:
    """Choose an A/B winner by hand (when the test was not conclusive) and send it to the rest."""
    _winner_run(slug, variant, local)


@campaign_app.command("evaluate")
def evaluate(
    slug: str, local: Annotated[bool, typer.Option("--local", help="Run in this process.")] = False
) -> None:
    """Pick the A/B winner now if the data allow it (what the scheduled follow-up run does)."""
    _winner_run(slug, None, local)


def staff_source(note: str, *, required: bool) -> Any:
    """The ledger's record of a staff change; lifting a suppression or granting consent needs a note of what
    the patient said (the Spam Act puts the proof of consent on us)."""
    from messaging import consent
    from models import ConsentOrigin

    if required and not note.strip():
        raise typer.BadParameter("--note is required: how and in what words the patient agreed")
    return consent.ConsentSource("staff", "avatar-crm cli", note.strip() or None, origin=ConsentOrigin.STAFF)


def audit_change(
    session: Any,
    action: str,
    contact_id: int | None,
    note: str | None,
    *,
    outcome: str = "allowed",
    **detail: Any,
) -> None:
    """The access-audit row of a consent or suppression change made at the shell, as the OS user, in the
    change's own transaction (the consent ledger says what changed; this says which person did it). The
    subject is the contact's id, never the number or address."""
    from models.access_audit import record, shell_actor

    subject = f"contact:{contact_id}" if contact_id is not None else None
    who = shell_actor()
    record(
        session,
        who,
        action=action,
        subject=subject,
        outcome=outcome,
        reason=note,
        **detail,
    )


def refuse(refused: Any, action: str) -> NoReturn:
    """A staff change that would override the patient's own opt-out: kept in the ledger and the access audit
    (denied), said plainly, and the command fails (`refused` is a `messaging.consent.ConsentRefused`)."""
    from messaging import consent
    from models import session_scope

    with session_scope() as session:
        consent.record_refusal(session, refused)
        audit_change(session, action, refused.contact_id, refused.why.wording, outcome="denied")
    typer.echo(f"refused, nothing changed: {refused.reason}", err=True)
    raise typer.Exit(1)


def _consent(email: str | None, phone: str | None, granted: bool, note: str) -> None:
    from messaging import consent
    from messaging.consent_lookup import Address, AddressError, marketing_change
    from messaging.contacts import normalize_email, normalize_phone
    from models import get_settings, session_scope

    if bool(email) == bool(phone):
        raise typer.BadParameter("give exactly one of --email or --phone")
    why = staff_source(note, required=granted)
    if email:
        found = normalize_email(email)
        address = Address("email", found) if found else None
    else:
        found = normalize_phone(phone, get_settings().default_phone_region)
        address = Address("phone", found) if found else None
    kind = "email" if email else "phone"
    if address is None:
        raise typer.BadParameter(f"{email or phone!r} is not a valid {kind}")
    try:
        with session_scope() as session:
            made = marketing_change(session, address, granted=granted, why=why)
            audit_change(session, made.action, made.contact_id, why.wording, channel=address.channel.value)
    except AddressError as exc:
        raise typer.BadParameter(f"no patient with that {kind}") from exc
    except consent.ConsentRefused as refused:
        refuse(refused, "consent.granted" if granted else "consent.withdrawn")
    channel = address.channel
    typer.echo(
        f"marketing {channel} consent {'granted' if granted else 'withdrawn'} for contact {made.contact_id}"
    )
    if made.still_blocked:
        typer.echo(
            f"warning: {channel} to this patient is still suppressed ({made.still_blocked}); "
            "`avatar-crm suppress remove` lifts a staff suppression",
            err=True,
        )


@consent_app.command("grant")
def consent_grant(
    email: Annotated[str | None, typer.Option(help="The patient's email (email marketing).")] = None,
    phone: Annotated[str | None, typer.Option(help="The patient's mobile (SMS marketing).")] = None,
    note: Annotated[str, typer.Option(help="How and in what words the patient agreed (required).")] = "",
) -> None:
    """Record a patient's opt-in to marketing on one channel (kept in the consent ledger).

    Refused (exit 1, nothing changed) if the patient opted out themselves (STOP by SMS, an email
    unsubscribe): only the patient can undo that, by texting START or on an email's unsubscribe page."""
    _consent(email, phone, True, note)


@consent_app.command("withdraw")
def consent_withdraw(
    email: Annotated[str | None, typer.Option(help="The patient's email.")] = None,
    phone: Annotated[str | None, typer.Option(help="The patient's mobile.")] = None,
    note: Annotated[str, typer.Option(help="What the patient said.")] = "",
) -> None:
    """Record a patient's opt-out of marketing on one channel (suppressed from then on)."""
    _consent(email, phone, False, note)


def _tag_addresses(addresses: list[str], file: Path | None) -> list[str]:
    found = [a.strip() for a in addresses if a.strip()]
    if file is not None:
        found += [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if not found:
        raise typer.BadParameter("give emails or mobile numbers, or --file with one per line")
    return found


def _tag(tag: str, addresses: list[str], file: Path | None, *, add: bool) -> None:
    from sqlalchemy import delete
    from sqlmodel import select

    from messaging.contacts import AddressKind, find_contacts, normalize_email, normalize_phone
    from models import ContactTag, get_settings, session_scope

    tag = tag.strip()
    if not tag or len(tag) > 100:
        raise typer.BadParameter("a tag is 1 to 100 characters")
    region = get_settings().default_phone_region
    changed, unknown, invalid = 0, 0, []
    kind: AddressKind
    with session_scope() as session:
        for number, text in enumerate(_tag_addresses(addresses, file), start=1):
            if "@" in text:
                address, kind = normalize_email(text), "email"
            else:
                address, kind = normalize_phone(text, region), "phone"
            if address is None:
                invalid.append(number)
                continue
            # Every patient at the address, not just the oldest record: a family may share one email.
            ids = [contact.id for contact in find_contacts(session, [(kind, address)])]
            unknown += not ids
            for contact_id in ids:
                existing = session.exec(
                    select(ContactTag).where(ContactTag.contact_id == contact_id, ContactTag.tag == tag)
                ).first()
                if add and existing is None:
                    session.add(ContactTag(contact_id=contact_id, tag=tag))
                    changed += 1
                elif not add and existing is not None:
                    session.execute(delete(ContactTag).where(ContactTag.id == existing.id))
                    changed += 1
    # Counts and positions only: the addresses themselves are patient details.
    typer.echo(
        f"{'tagged' if add else 'untagged'} {changed} patient(s) {tag!r}; {unknown} address(es) unknown"
    )
    if invalid:
        typer.echo(f"not an email or mobile number: entries {', '.join(map(str, invalid))}", err=True)
        raise typer.Exit(1)


@tag_app.command("add")
def tag_add(
    tag: Annotated[str, typer.Argument(help="The tag, e.g. newsletter.")],
    addresses: Annotated[list[str] | None, typer.Argument(help="Emails or mobile numbers.")] = None,
    file: Annotated[
        Path | None, typer.Option(help="A file with one email or mobile number per line.")
    ] = None,
) -> None:
    """Tag the patients with these emails or numbers (a campaign's `audience.tags` selects them)."""
    _tag(tag, addresses or [], file, add=True)


@tag_app.command("remove")
def tag_remove(
    tag: Annotated[str, typer.Argument(help="The tag.")],
    addresses: Annotated[list[str] | None, typer.Argument(help="Emails or mobile numbers.")] = None,
    file: Annotated[
        Path | None, typer.Option(help="A file with one email or mobile number per line.")
    ] = None,
) -> None:
    """Take the tag off the patients with these emails or numbers."""
    _tag(tag, addresses or [], file, add=False)
