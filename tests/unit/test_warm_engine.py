"""Which runs the warm engine may run from its imported code, and where a worker's engine listens."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from deployments.release import run_git
from deployments.scaled import engine_socket_path
from deployments.warm_engine import GIT_CLONE_STEP, RunCold, checkout_commit, warm_entrypoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MODULES = {"flows.booking_intake", "flows.sms_triage"}


def deployment(commit: str | None = COMMIT, entrypoint: str = "flows/booking_intake.py:booking_intake"):
    steps = [{GIT_CLONE_STEP: {"id": "clone", "repository": "/srv/repo", "commit_sha": commit}}]
    return SimpleNamespace(pull_steps=steps if commit else None, entrypoint=entrypoint)


def test_a_run_of_the_imported_commit_runs_the_imported_flow() -> None:
    assert warm_entrypoint(deployment(), COMMIT, MODULES) == "flows.booking_intake:booking_intake"


@pytest.mark.parametrize(
    ("made", "engine_commit", "why"),
    [
        (deployment(commit="f" * 40), COMMIT, "pins ffffffffffff, this engine has 0123456789ab"),
        (deployment(), None, "no known commit"),
        (deployment(commit=None), COMMIT, "does not pin a commit"),
        (deployment(entrypoint="flows/other.py:other"), COMMIT, "not imported here"),
        (None, COMMIT, "no deployment"),
    ],
)
def test_any_other_run_is_handed_back_to_run_cold_with_the_reason(made, engine_commit, why) -> None:
    with pytest.raises(RunCold, match=why):
        warm_entrypoint(made, engine_commit, MODULES)


def test_a_checkout_is_at_its_commit_only_while_its_tracked_files_are_unchanged(tmp_path: Path) -> None:
    run_git(tmp_path, "init", "-q")
    (tmp_path / "flow.py").write_text("x = 1\n")
    run_git(tmp_path, "add", "flow.py")
    run_git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    head = run_git(tmp_path, "rev-parse", "HEAD")
    assert checkout_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("untracked files are not the code\n")
    assert checkout_commit(tmp_path) == head
    (tmp_path / "flow.py").write_text("x = 2\n")
    assert checkout_commit(tmp_path) is None
    assert checkout_commit(tmp_path / "flow.py") is None  # not a checkout at all


def test_each_worker_gets_its_own_socket_short_enough_for_unix_sockets(tmp_path: Path) -> None:
    assert engine_socket_path(tmp_path, 2) == str(tmp_path / "engine-2.sock")
    deep = tmp_path / ("d" * 120)
    long_one, other = engine_socket_path(deep, 1), engine_socket_path(deep, 2)
    assert len(long_one.encode()) <= 100 and long_one != other
    assert engine_socket_path(deep, 1) == long_one  # the same every start: workers and engine agree
