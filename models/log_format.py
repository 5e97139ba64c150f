"""One log format for the gateway, the runner (and its flow runs) and the CLI: plain text (as Prefect and
uvicorn print it) by default, JSON lines with `LOG_FORMAT=json`.

`configure_logging()` is called once by each entry point (the gateway's app, `deployments/serve.py` and the
forkserver its runs are forked from, the CLI's callback). It puts `ContextFilter` on every handler that
writes to a console, so every line carries what it belongs to: `request_id` (the gateway's request, through
a getter the gateway registers: this bottom layer knows nothing of it) and `flow_run_id` / `task_run_id`
(Prefect's run loggers put them on their records; any other line logged inside a run gets the run's id from
Prefect's context). With JSON, Prefect's console handlers are replaced by plain stream handlers (Prefect's
prints through rich, which would colour and wrap the JSON), and every console handler gets `JsonFormatter`.
Handlers that do not write to a console (Prefect's API handler, which ships run logs to the UI; pytest's
capture) are left as they are, apart from the filter.

No bodies and no PII: the code logs ids, counts and exception types, never a request body or a message's
text; as a safety net the filter masks anything shaped like an email address or a phone number in the
message, and an exception is rendered as its type and frames, never its message (which may quote data).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from logging.handlers import QueueHandler
from typing import Any, Literal

LogFormat = Literal["text", "json"]

# Context getters by attribute name (e.g. "request_id" from the gateway); a getter answers None or "-"
# outside its context.
_context: dict[str, Callable[[], str | None]] = {}

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Australian numbers as patients type them (04xx xxx xxx, (07) 3xxx xxxx, +61 4xx…), and any E.164 number.
_PHONE = re.compile(r"(?<![\w-])(?:\+?61[ -]?|\(?0)[2-478]\)?(?:[ -]?\d){8}(?![\w-])|\+\d{8,15}\b")
REDACTED = "[redacted]"
_RUN_FIELDS = ("flow_run_id", "task_run_id")


def register_log_context(name: str, getter: Callable[[], str | None]) -> None:
    """Have every log line carry `name` from `getter` (the gateway registers its request id)."""
    _context[name] = getter


def redact(text: str) -> str:
    """`text` with email addresses and phone numbers masked."""
    return _PHONE.sub(REDACTED, _EMAIL.sub(REDACTED, text))


def _prefect_run_ids() -> dict[str, str]:
    """The flow run (and task run) this line is logged in, from Prefect's context; none outside a run."""
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover - Prefect is always installed with this project
        return {}
    ids: dict[str, str] = {}
    task = TaskRunContext.get()
    if task is not None:
        ids["task_run_id"] = str(task.task_run.id)
        if task.task_run.flow_run_id is not None:
            ids["flow_run_id"] = str(task.task_run.flow_run_id)
    flow = FlowRunContext.get()
    if flow is not None and flow.flow_run is not None:
        ids.setdefault("flow_run_id", str(flow.flow_run.id))
    return ids


class ContextFilter(logging.Filter):
    """Adds `request_id`, `flow_run_id` and `task_run_id` (None when the line belongs to none) and masks
    emails and phones in the message. Never drops a line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_avatar_context", False):
            return True  # already done by another handler's filter
        for name, getter in _context.items():
            value = getter()
            setattr(record, name, value if value not in (None, "", "-") else None)
        have = {name: getattr(record, name, None) for name in _RUN_FIELDS}
        if not all(have.values()):
            found = _prefect_run_ids()
            for name in _RUN_FIELDS:
                if not have[name] or have[name] == "<unknown>":
                    setattr(record, name, found.get(name))
        for name in ("request_id", *_RUN_FIELDS):
            if not hasattr(record, name):
                setattr(record, name, None)
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        record._avatar_context = True
        return True


def exception_summary(exc_info: Any) -> str:
    """An exception as its type and frames: never its message, which may quote a body or an address."""
    _, exc, _ = exc_info
    if exc is None:
        return ""
    frames = "".join(traceback.TracebackException.from_exception(exc).stack.format())
    return f"{type(exc).__name__}\n{frames.rstrip()}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, message, and the ids the line belongs
    to (request_id, flow_run_id, task_run_id, flow_run_name where Prefect gave it) when it has them."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in ("request_id", "flow_run_id", "task_run_id", "flow_run_name", "task_run_name"):
            value = getattr(record, name, None)
            if value not in (None, "", "-", "<unknown>"):
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = exception_summary(record.exc_info)
        elif getattr(record, "exception_summary", None):
            line["exception"] = record.exception_summary
        return json.dumps(line, ensure_ascii=False, default=str)


def _is_console(handler: logging.Handler) -> bool:
    """A handler printing lines for people or a log collector: Prefect's console handlers and plain stream
    handlers (uvicorn's, ours); not pytest's capture (a subclass) nor files."""
    from prefect.logging.handlers import PrefectConsoleHandler

    return isinstance(handler, PrefectConsoleHandler) or type(handler).__name__ in (
        "StreamHandler",
        "_SafeStreamHandler",
    )


def _loggers_with_handlers() -> list[logging.Logger]:
    loggers = [logging.getLogger()]
    loggers += [
        item for item in logging.Logger.manager.loggerDict.values() if isinstance(item, logging.Logger)
    ]
    return [item for item in loggers if item.handlers]


def log_format_before_sources() -> LogFormat:
    """`LOG_FORMAT` from the environment and `.env`, for a process that logs before its settings are
    complete (the CLI, before it reads the blocks); `text` if the settings do not read yet."""
    from models.settings import get_settings

    try:
        return get_settings().log_format
    except Exception:  # e.g. a provider whose secrets are in the blocks not yet read: the next read says
        return "text"


class _MessageOnly(logging.Formatter):
    """For a queue handler's `prepare` (which keeps only the formatted text): the redacted message, with the
    exception summary kept aside for `JsonFormatter` in the listener's thread."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info:
            record.exception_summary = exception_summary(record.exc_info)
        return redact(record.getMessage())


def _add_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())


def configure_logging(log_format: LogFormat | None = None) -> LogFormat:
    """Install the format (`LOG_FORMAT` unless given) and the context filter on the console handlers; safe
    to call again (it only ever sets the same formatter and one filter per handler).

    Litestar's queue handler (the gateway's root handler: lines are written by a listener thread, off the
    event loop) gets the filter itself, so the ids are read in the thread that logged the line; in JSON the
    listener's handlers format."""
    if log_format is None:
        from models.settings import get_settings

        log_format = get_settings().log_format
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # Prefect's handlers first (as `import prefect` sets them up), then adjusted
    json_formatter = JsonFormatter()
    for logger in _loggers_with_handlers():
        for index, handler in enumerate(list(logger.handlers)):
            _add_filter(handler)
            listener = getattr(handler, "listener", None)
            if isinstance(handler, QueueHandler) and listener is not None:
                if log_format == "json":
                    handler.setFormatter(_MessageOnly())
                    for inner in listener.handlers:
                        inner.setFormatter(json_formatter)
                continue
            if log_format != "json" or not _is_console(handler):
                continue
            if isinstance(handler, PrefectConsoleHandler):
                plain = logging.StreamHandler(getattr(handler, "stream", None) or sys.stderr)
                plain.setLevel(handler.level)
                _add_filter(plain)
                logger.handlers[index] = plain
                handler = plain
            handler.setFormatter(json_formatter)
    return log_format
