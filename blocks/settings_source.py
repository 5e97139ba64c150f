"""Settings from Prefect blocks: read at a process's start (above the environment), written by `secrets push`.

`models` may not import this layer, so the processes that can reach Prefect register it with
`models.settings.register_settings_source` (`install()`): the CLI for every command, the flow runner and the
process its flow runs fork from, the gateway. Reading costs one health check and six small requests on
loopback, once per process (settings are cached). When no Prefect API answers, settings come from the
environment and `.env` alone and the process says so (a warning when PREFECT_API_URL was set; `make up`'s
server not running is the normal case for a command run on its own), so tests, scripts and a gateway started
while Prefect is down still start.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from dotenv import dotenv_values
from prefect.client.orchestration import PrefectClient
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL
from pydantic import SecretStr

from blocks.credentials import BLOCK_TYPES, CrmBlock
from models.data_dir import read_prefect_login
from models.settings import Settings, register_settings_source

logger = logging.getLogger(__name__)

BLOCK_NAME_VARIABLE = "CRM_SECRETS_BLOCK"  # which block documents to read: one clinic per Prefect server
DEFAULT_BLOCK_NAME = "avatar-crm"
HEALTH_TIMEOUT_SECONDS = 2.0
SOURCE_NAME = "prefect-blocks"


@dataclass
class BlockRead:
    """What the last read found, for `avatar-crm config` (never values)."""

    api_url: str | None = None
    state: Literal["read", "unreachable", "failed", "not read"] = "not read"
    found: list[str] = field(default_factory=list)  # "<type slug>/<name>"
    detail: str = ""


last_read = BlockRead()


def block_name() -> str:
    return os.environ.get(BLOCK_NAME_VARIABLE) or DEFAULT_BLOCK_NAME


def api_url() -> tuple[str, bool]:
    """The Prefect API to read from, and whether it was configured (PREFECT_API_URL) or is `make up`'s."""
    configured = PREFECT_API_URL.value()
    if configured:
        return configured.rstrip("/"), True
    port = os.environ.get("PREFECT_PORT") or dotenv_values(".env").get("PREFECT_PORT") or "4200"
    return f"http://127.0.0.1:{port}/api", False


def api_login(configured: bool) -> str | None:
    """The login to send: PREFECT_API_AUTH_STRING, else (for `make up`'s server) the one `make up` wrote in
    the data directory. Read from the environment: this runs while the settings themselves are being made."""
    given = PREFECT_API_AUTH_STRING.value()
    if given or configured:
        return given
    data_dir = Path(os.environ.get("CRM_DATA_DIR") or dotenv_values(".env").get("CRM_DATA_DIR") or "./var")
    return read_prefect_login(data_dir)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=HEALTH_TIMEOUT_SECONDS).status_code == 200
    except httpx.HTTPError:
        return False


def _in_own_loop(coroutine: Any) -> Any:
    """Run a coroutine to completion from sync code, whether or not this thread already runs a loop
    (settings are first read inside uvicorn's loop and inside Prefect's flow-run engine)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _load_all(url: str, name: str, login: str | None) -> dict[str, CrmBlock]:
    async with PrefectClient(api=url, auth_string=login) as client:

        async def load(block_type: type[CrmBlock]) -> CrmBlock | None:
            try:
                return await block_type.aload(name, client=client)
            except ValueError:  # no such document (or block type) on this server: nothing pushed
                return None

        loaded = await asyncio.gather(*(load(block_type) for block_type in BLOCK_TYPES))
    return {block.get_block_type_slug(): block for block in loaded if block is not None}


def read_block_settings() -> dict[str, tuple[Any, str]]:
    """{settings field: (value, "block <slug>/<name>")} for every field a pushed block holds."""
    url, configured = api_url()
    name = block_name()
    last_read.api_url, last_read.found, last_read.detail = url, [], ""
    if not _answers(url):
        last_read.state = "unreachable"
        message = f"no Prefect API answers at {url}: settings come from the environment and .env only"
        (logger.warning if configured else logger.info)(message)
        return {}
    try:
        blocks = _in_own_loop(_load_all(url, name, api_login(configured)))
    except Exception as exc:  # a half-up server must not stop a process that the environment can configure
        last_read.state, last_read.detail = "failed", type(exc).__name__
        logger.warning("reading blocks from %s failed (%s): using the environment", url, last_read.detail)
        return {}
    values: dict[str, tuple[Any, str]] = {}
    for slug, block in blocks.items():
        origin = f"block {slug}/{name}"
        last_read.found.append(f"{slug}/{name}")
        for block_field, settings_field in type(block).settings_fields.items():
            value = getattr(block, block_field)
            if value is not None and value != "":
                values[settings_field] = (value, origin)
    last_read.state = "read"
    return values


def install() -> None:
    """Make this process's settings read the blocks first (idempotent)."""
    register_settings_source(SOURCE_NAME, read_block_settings)


@dataclass
class Pushed:
    slug: str
    fields: list[str]  # the settings stored (names, never values)


def _environment_values(settings: Settings, key_file: Path | None) -> dict[str, Any]:
    """The settings the environment or `.env` set, by field (defaults are not pushed)."""
    origins = settings.origins()
    values = {name: getattr(settings, name) for name, origin in origins.items() if origin in ("env", ".env")}
    if "crm_encryption_key" not in values and key_file is not None and key_file.exists():
        values["crm_encryption_key"] = SecretStr(key_file.read_text().strip())
    return values


def push(settings: Settings, name: str, key_file: Path | None = None) -> list[Pushed]:
    """Create or update each block from what the environment sets; fields it does not set keep their value."""
    values = _environment_values(settings, key_file)
    url, configured = api_url()

    async def save_all() -> list[Pushed]:
        pushed = []
        async with PrefectClient(api=url, auth_string=api_login(configured)) as client:
            for block_type in BLOCK_TYPES:
                given = {
                    block_field: values[settings_field]
                    for block_field, settings_field in block_type.settings_fields.items()
                    if values.get(settings_field) not in (None, "")
                }
                if not given:
                    continue
                try:
                    current = (await block_type.aload(name, client=client)).model_dump(
                        include=set(block_type.settings_fields)
                    )
                except ValueError:
                    current = {}
                block = block_type(**{**current, **given})
                await block.asave(name, overwrite=True, client=client)
                pushed.append(
                    Pushed(block_type.get_block_type_slug(), [block_type.settings_fields[f] for f in given])
                )
        return pushed

    return _in_own_loop(save_all())
