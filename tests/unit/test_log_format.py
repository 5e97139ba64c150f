"""One log format (LOG_FORMAT): JSON lines from the gateway carrying the request id and nothing of the body;
a flow run's lines carrying its flow-run id; the CLI's lines JSON too; plain text unchanged by default."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient
from prefect import flow, task
from prefect.logging import get_run_logger

from models import Settings
from models.log_format import ContextFilter, JsonFormatter, configure_logging, redact
from providers.wix_simulator import sign_hmac, simple_event
from webhook_gateway.app import create_app

SECRET = b"log-format-secret"
URL = "/webhooks/wix/bookings"
PHONE = "+61412345678"
EMAIL = "alex.nguyen@example.com"
NAME = "Alexandra Nguyenova"


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Whatever a test's app, flow or command did to logging and the settings sources is undone."""
    from models import settings as settings_module

    loggers = [
        logging.getLogger(),
        *(item for item in logging.Logger.manager.loggerDict.values() if isinstance(item, logging.Logger)),
    ]
    saved = {
        id(lg): (
            lg,
            list(lg.handlers),
            lg.level,
            {id(h): (h.formatter, list(h.filters)) for h in lg.handlers},
        )
        for lg in loggers
    }
    sources = dict(settings_module._sources)
    settings_module._sources.clear()  # what earlier tests' commands registered (the blocks) is not ours
    settings_module.get_settings.cache_clear()
    yield
    for lg, handlers, level, configs in saved.values():
        lg.handlers[:] = handlers
        lg.setLevel(level)
        for h in handlers:
            h.setFormatter(configs[id(h)][0])
            h.filters[:] = configs[id(h)][1]
    settings_module._sources.clear()
    settings_module._sources.update(sources)
    settings_module.get_settings.cache_clear()


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A console handler on the root logger (as uvicorn's or a collector's), restored afterwards with the
    handlers' formatters and filters as they were."""
    root = logging.getLogger()
    before = {id(h): (h.formatter, list(h.filters)) for h in root.handlers}
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for h in handlers:
            if id(h) in before:
                h.setFormatter(before[id(h)][0])
                h.filters[:] = before[id(h)][1]


def _lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.db
async def test_gateway_lines_are_json_with_the_request_id_and_no_body(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        crm_database_url=db,
        wix_webhook_secret=SECRET.decode(),
        dispatch_poll_seconds=60.0,
        log_format="json",
    )  # type: ignore[call-arg]
    body = simple_event(
        "bookings/created",
        str(uuid.uuid4()),
        name=NAME,
        email=EMAIL,
        phone=PHONE,
        start=datetime.now(UTC) + timedelta(days=3),
    )
    app = create_app(settings, prefect_api_url="http://127.0.0.1:9/api")
    async with AsyncTestClient(app=app) as client:
        refused = await client.post(
            URL, content=body, headers={"X-Wix-Webhook-Signature": "sha256=" + "0" * 64}
        )
        malformed_body = json.dumps({"event": "bookings/created", "data": {"email": EMAIL}}).encode()
        malformed = await client.post(
            URL,
            content=malformed_body,
            headers={"X-Wix-Webhook-Signature": sign_hmac(malformed_body, SECRET)},
        )
    assert refused.status_code == 401 and malformed.status_code == 400
    # Litestar's listener thread writes the lines (to stderr, as the gateway does under uvicorn).
    rid = refused.headers["X-Request-ID"]
    text = ""
    for _ in range(50):
        text += capsys.readouterr().err
        if rid in text:
            break
        await asyncio.sleep(0.05)
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line parses
    mine = [line for line in lines if line.get("request_id") == rid]
    assert mine, text
    assert mine[0]["level"] == "WARNING" and "refused wix webhook" in mine[0]["message"]
    assert {"ts", "level", "logger", "message"} <= set(mine[0])
    for secret in (PHONE, EMAIL, NAME, "Alexandra", "0412345678", body.decode()[:40]):
        assert secret not in text


def test_a_flow_runs_lines_carry_its_flow_run_id(captured: io.StringIO) -> None:
    configure_logging("json")

    @task
    def step() -> None:
        logging.getLogger("avatar.test").warning("inside a task, with a plain logger")

    @flow(name="log-format-probe")
    def probe() -> str:
        from prefect.runtime import flow_run

        get_run_logger().info("inside the flow, with the run logger")
        logging.getLogger("avatar.test").warning("inside the flow, with a plain logger")
        step()
        return str(flow_run.id)

    run_id = probe()
    lines = _lines(captured)
    by_message = {line["message"]: line for line in lines}
    assert by_message["inside the flow, with the run logger"]["flow_run_id"] == run_id
    assert by_message["inside the flow, with a plain logger"]["flow_run_id"] == run_id
    in_task = by_message["inside a task, with a plain logger"]
    assert in_task["flow_run_id"] == run_id and in_task["task_run_id"]
    # Prefect's own engine lines (e.g. "Finished in state Completed()") carry it too.
    assert any("Finished in state" in line["message"] and line.get("flow_run_id") == run_id for line in lines)


def test_cli_lines_are_json(captured: io.StringIO, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from deployments.cli import app
    from models import get_settings

    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()

    @app.command("log-probe", hidden=True)
    def log_probe() -> None:
        logging.getLogger("deployments.cli").warning("probe for %s", EMAIL)

    try:
        result = CliRunner().invoke(app, ["log-probe"])
    finally:
        get_settings.cache_clear()
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "log-probe"]
    assert result.exit_code == 0, result.output
    (line,) = [line for line in _lines(captured) if line["logger"] == "deployments.cli"]
    assert line["message"] == "probe for [redacted]" and line["level"] == "WARNING"


def test_plain_text_is_unchanged_by_default(captured: io.StringIO) -> None:
    (handler,) = [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is captured]
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    assert configure_logging() == "text"
    assert handler.formatter is formatter
    logging.getLogger("avatar.test").warning("plain line %s", 1)
    assert captured.getvalue() == "WARNING avatar.test plain line 1\n"


def test_redaction_and_exceptions_carry_no_details() -> None:
    assert redact(f"to {PHONE}, 0412 345 678, (07) 3123 4567 or {EMAIL}") == (
        "to [redacted], [redacted], [redacted] or [redacted]"
    )
    # ids and counts are left alone
    rid = uuid.uuid4().hex
    assert (
        redact(f"event 12345 run {rid} at 2026-12-08 07:00:00")
        == f"event 12345 run {rid} at 2026-12-08 07:00:00"
    )
    try:
        raise ValueError(f"bad phone {PHONE}")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, exc_info=__import__("sys").exc_info()
        )
    ContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["exception"].startswith("ValueError\n") and PHONE not in line["exception"]
