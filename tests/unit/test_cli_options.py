"""Options an operator types by hand are checked before anything runs, saying what is wrong."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from deployments.cli import app as cli


@pytest.mark.parametrize("command", [["reminders", "sweep"], ["retention", "run", "--dry-run"]])
@pytest.mark.parametrize(
    ("now", "says"),
    [("2026-11-25T09:00:00", "needs a UTC offset"), ("next tuesday", "not an ISO 8601 time")],
)
def test_a_bad_now_is_refused_before_anything_runs(command: list[str], now: str, says: str) -> None:
    refused = CliRunner().invoke(cli, [*command, "--now", now])
    assert refused.exit_code == 2
    assert says in refused.output
