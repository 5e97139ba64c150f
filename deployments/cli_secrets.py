"""`avatar-crm secrets push` and `avatar-crm config`: secrets kept in Prefect blocks, and where each setting
came from (a block, the environment, `.env`, or the default) without ever printing a secret."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import SecretStr

secrets_app = typer.Typer(help="Secrets kept in Prefect blocks.", no_args_is_help=True)

_LONG = 60  # a PEM key or JSON map is shortened in `config`


@secrets_app.command("push")
def secrets_push(
    name: Annotated[
        str | None, typer.Option(help="Block document name (default CRM_SECRETS_BLOCK, else avatar-crm).")
    ] = None,
) -> None:
    """Create or update the avatar-crm blocks from what the environment and `.env` set (then `.env` can go).

    Sent to PREFECT_API_URL, else to make up's Prefect. Every process started afterwards reads the blocks
    before the environment. The encryption key file in the data directory is pushed when no
    CRM_ENCRYPTION_KEY is set.
    """
    from blocks.settings_source import block_name, push
    from deployments.prefect_api import prefect_api
    from models.settings import settings_from_environment

    settings = settings_from_environment()
    with prefect_api("exit") as url:
        pushed = push(settings, name or block_name(), key_file=settings.encryption_key_file)
    if not pushed:
        typer.echo("nothing to push: the environment and .env set none of the blocks' settings", err=True)
        raise typer.Exit(1)
    for item in pushed:
        typer.echo(f"{item.slug}/{name or block_name()}: {', '.join(f.upper() for f in item.fields)}")
    typer.echo(
        f"stored in the Prefect server at {url}. Processes started from now on read them first; remove "
        "them from .env and the environment (back up the encryption key)."
    )


def _shown(name: str, value: object) -> str:
    if isinstance(value, SecretStr):
        return "(set)"
    if value is None or value == "":
        return "(unset)"
    text = str(value)
    if name.endswith("_url") and "@" in text:
        from sqlalchemy.engine import make_url

        text = make_url(text).render_as_string(hide_password=True)
    return text if len(text) <= _LONG else text[: _LONG - 1] + "…"


def show_config() -> None:
    """Every setting, where it came from and its value; secrets only as (set) / (unset)."""
    from blocks import settings_source
    from models import get_settings

    settings = get_settings()
    read = settings_source.last_read
    if read.state == "read":
        found = ", ".join(read.found) or "none pushed"
        typer.echo(f"blocks: read from {read.api_url} ({found})")
    elif read.state == "not read":
        typer.echo("blocks: not read")
    else:
        typer.echo(
            f"blocks: not read ({read.state}: no Prefect API answered at {read.api_url} {read.detail}); "
            "settings from the environment and .env only"
        )
    origins = settings.origins()
    width = max(len(name) for name in origins)
    for name, origin in origins.items():
        typer.echo(f"{name.upper():<{width}}  {origin:<34}  {_shown(name, getattr(settings, name))}")
