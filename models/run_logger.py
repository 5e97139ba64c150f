"""The logger for code that runs both inside Prefect runs and outside them (CLI, tests, benchmarks)."""

from __future__ import annotations

import logging
from collections.abc import Mapping


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:  # type: ignore[type-arg]
    """The current run's logger, so lines land in the Prefect UI; outside a run, the module's logger."""
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except Exception:  # no flow or task run in this context
        return logging.getLogger(name)


def describe_counts(counts: Mapping[str, int], empty: str = "nothing due") -> str:
    """`dropped: 1, sent: 2` for a log line or an artifact: values, not Python reprs of the status enums."""
    return ", ".join(f"{key}: {n}" for key, n in sorted((str(k), v) for k, v in counts.items())) or empty
