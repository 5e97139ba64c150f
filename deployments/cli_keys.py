"""`avatar-crm keys`: the encryption key ring (status, rotation) and the age of every key and secret."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

keys_app = typer.Typer(help="Encryption keys: status, rotation, ages.", no_args_is_help=True)


@keys_app.command("new")
def keys_new() -> None:
    """Print a new key to put first in CRM_ENCRYPTION_KEYS (docs/security.md: rotation)."""
    from models.crypto import generate_key

    typer.echo(generate_key())


@keys_app.command("status")
def keys_status(
    counts: Annotated[
        bool, typer.Option(help="Also count the values each key seals (reads every row).")
    ] = True,
) -> None:
    """Key ids of the ring (newest first) with how many values each seals, and every key's and secret's age.
    Exits 1 when one is older than KEY_MAX_AGE_DAYS, or values are sealed by a key not in the ring."""
    from models import get_settings
    from models.crypto import cipher_for_settings
    from models.keyring import count_by_key, key_ages

    settings = get_settings()
    cipher = cipher_for_settings(settings)
    source = "CRM_BLIND_INDEX_KEY" if settings.blind_index_key() else "the oldest key of the ring"
    typer.echo(
        f"key ring (newest first): {', '.join(cipher.key_ids)}; new values sealed by {cipher.current_key_id}"
    )
    typer.echo(f"blind index key: {cipher.index_key_id} (from {source})")
    problem = False
    if counts:
        totals: dict[str, int] = {}
        for column in count_by_key():
            for key, n in column.by_key.items():
                totals[key] = totals.get(key, 0) + n
        for kid in cipher.key_ids:
            typer.echo(f"  {kid}: {totals.pop(kid, 0)} values")
        for kid, n in totals.items():
            problem = True
            where = (
                "old format: run `avatar-crm db upgrade`"
                if kid == "legacy"
                else "NOT IN THE RING: unreadable"
            )
            typer.echo(f"  {kid}: {n} values ({where})")
    typer.echo(f"ages (limit {settings.key_max_age_days} days):")
    for age in key_ages(settings):
        flag = "  TOO OLD: rotate it" if age.too_old else ""
        since = f"{age.first_seen_at:%Y-%m-%d}"
        typer.echo(f"  {age.purpose:<30} {age.key_id}  {age.age.days:>5} days (since {since}){flag}")
        problem = problem or age.too_old
    if problem:
        raise typer.Exit(1)


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(help="Rows re-sealed per transaction.")] = 1000,
) -> None:
    """Re-seal every value with the newest key of the ring, in batches, while everything keeps running.
    Stopped or killed, it is resumed by running it again. Afterwards the older keys seal nothing and may be
    removed (first moving the oldest to CRM_BLIND_INDEX_KEY, unless that is set)."""
    from models import get_settings
    from models.crypto import cipher_for_settings
    from models.keyring import record_keys, rotate

    settings = get_settings()
    cipher = cipher_for_settings(settings)
    record_keys(settings)
    typer.echo(f"re-sealing with key {cipher.current_key_id} (ring: {', '.join(cipher.key_ids)})")
    last: dict[str, int] = {}

    def progress(column: str, done: int) -> None:
        if done // 10_000 != last.get(column, 0) // 10_000:
            typer.echo(f"  {column}: {done} re-sealed")
        last[column] = done
        sys.stdout.flush()

    result = rotate(settings=settings, batch=batch_size, progress=progress)
    typer.echo(f"re-sealed {result.resealed} values ({result.skipped} changed meanwhile, re-read)")
    if result.remaining:
        typer.echo(
            f"{result.remaining} values are still sealed by an older key: a process still runs with the old "
            "ring? Restart it with the new CRM_ENCRYPTION_KEYS and run `avatar-crm keys rotate` again."
        )
        raise typer.Exit(1)
    older = cipher.key_ids[1:]
    if older:
        typer.echo(f"no value is sealed by {', '.join(older)} any more: they may leave the ring.")
        if not settings.blind_index_key():
            typer.echo(
                "Before the oldest leaves, set CRM_BLIND_INDEX_KEY to its value: it keys the lookups of "
                "phones, emails and services, and the default session secret (docs/security.md)."
            )
