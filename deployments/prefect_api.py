"""Which Prefect API a command talks to: PREFECT_API_URL when set, else the server `make up` runs.

Without this, a command run beside `make up` found no PREFECT_API_URL in its own shell, so Prefect started a
temporary server of its own (about 27 s here) that holds none of the stack's deployments, and failed with
`ObjectNotFound`. Commands that start a deployment need the stack and say so at once when it is not there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import httpx
import typer
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from models import get_settings
from models.data_dir import read_prefect_login

WhenDown = Literal["exit", "temporary", "wait"]


def _answers(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def prefect_api(when_down: WhenDown = "exit") -> Iterator[str | None]:
    """Point Prefect in this process (and processes it starts) at the API for the block; yields its URL.

    When no API answers: `exit` says what to start and exits 1 (commands that start a deployment);
    `temporary` yields None and lets Prefect run a temporary server (a flow run in this process, with no
    stack up); `wait` uses the URL anyway (the gateway: it stores webhooks and hands them over once it is up).
    """
    configured = PREFECT_API_URL.value()
    url = configured or get_settings().stack_prefect_api_url
    if when_down != "wait" and not _answers(url):
        if when_down == "exit" or configured:
            where = "PREFECT_API_URL" if configured else "the Prefect server of `make up`, PREFECT_PORT"
            typer.echo(
                f"no Prefect API answers at {url} ({where}). Start the system with `make up`, or set "
                "PREFECT_API_URL to a running Prefect server's API.",
                err=True,
            )
            raise typer.Exit(1)
        yield None
        return
    login = _stack_login(url) or PREFECT_API_AUTH_STRING.value()
    updates = {"PREFECT_API_URL": url, **({"PREFECT_API_AUTH_STRING": login} if login else {})}
    before = {name: os.environ.get(name) for name in updates}
    os.environ.update(updates)  # threads and child processes read the environment
    try:
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: login}):
            yield url
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _stack_login(url: str) -> str | None:
    """`make up`'s Prefect login, when the command talks to that server and no login was given."""
    settings = get_settings()
    if PREFECT_API_AUTH_STRING.value() or url.rstrip("/") != settings.stack_prefect_api_url:
        return None
    return read_prefect_login(settings.crm_data_dir)
