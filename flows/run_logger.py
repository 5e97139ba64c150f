"""The logger for code that runs both inside Prefect runs and outside them (CLI, tests, benchmarks)."""

from __future__ import annotations

import logging


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:  # type: ignore[type-arg]
    """The current run's logger, so lines land in the Prefect UI; outside a run, the module's logger."""
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except Exception:  # no flow or task run in this context
        return logging.getLogger(name)
