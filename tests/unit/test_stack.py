"""`make up`'s supervisor: a child that dies is started again with growing backoff and it says so; the
others are left serving."""

from __future__ import annotations

import sys

import pytest

from deployments.stack import Child, _stop

NO_PREFECT = "http://127.0.0.1:9/api"


def _dies(code: int) -> Child:
    return Child("flow runner", [sys.executable, "-c", f"import sys; sys.exit({code})"])


def _wait_dead(child: Child) -> None:
    assert child.process is not None
    child.process.wait(timeout=30)


def test_a_dead_child_is_restarted_with_backoff_and_logged(capsys: pytest.CaptureFixture[str]) -> None:
    child = _dies(3)
    child.start({})
    first_pid = child.process.pid  # type: ignore[union-attr]
    _wait_dead(child)

    child.check({}, now=child.started_at + 1)
    assert "flow runner exited with code 3; restarting it in 1s (restart 1)" in capsys.readouterr().out
    child.check({}, now=child.started_at + 1.5)  # backoff not over: still down
    assert child.process.pid == first_pid  # type: ignore[union-attr]
    child.check({}, now=child.started_at + 2)
    assert child.process.pid != first_pid  # type: ignore[union-attr]
    assert "flow runner restarted" in capsys.readouterr().out

    _wait_dead(child)
    child.check({}, now=child.started_at + 1)  # died again at once: a longer pause
    assert "restarting it in 2s (restart 2)" in capsys.readouterr().out
    child.check({}, now=child.started_at + 10)
    _wait_dead(child)
    child.check({}, now=child.started_at + 61)  # this one had run a minute: back to the shortest pause
    assert "restarting it in 1s (restart 1)" in capsys.readouterr().out
    _stop([child], NO_PREFECT, grace=0)


def test_a_running_child_is_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    child = Child("gateway", [sys.executable, "-c", "import time; time.sleep(30)"])
    child.start({})
    child.check({}, now=child.started_at + 100)
    assert child.restart_at is None and child.process.poll() is None  # type: ignore[union-attr]
    assert capsys.readouterr().out == ""
    _stop([child], NO_PREFECT, grace=0)
    assert child.process.poll() is not None  # type: ignore[union-attr]
