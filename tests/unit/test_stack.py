"""`make up`'s supervisor: a child that dies is started again with growing backoff and it says so; the
others are left serving."""

from __future__ import annotations

import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.stack import Child, Supervisor, prefect_environment, stop_children

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
    stop_children([child], NO_PREFECT, grace=0)


def test_a_running_child_is_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    child = Child("gateway", [sys.executable, "-c", "import time; time.sleep(30)"])
    child.start({})
    child.check({}, now=child.started_at + 100)
    assert child.restart_at is None and child.process.poll() is None  # type: ignore[union-attr]
    assert capsys.readouterr().out == ""
    stop_children([child], NO_PREFECT, grace=0)
    assert child.process.poll() is not None  # type: ignore[union-attr]


def _sleeper(name: str) -> Child:
    return Child(name, [sys.executable, "-c", "import time; time.sleep(60)"])


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """The supervisor installs its own SIGINT/SIGTERM handlers; pytest's come back after the test."""
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, handlers[0])
    signal.signal(signal.SIGTERM, handlers[1])


@pytest.mark.usefixtures("signal_handlers")
def test_a_stack_that_cannot_start_says_why_exits_1_and_leaves_nothing_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started: list[Child] = []

    def boot(stack: Supervisor) -> None:
        for name in ("prefect server", "gateway"):
            stack.start(_sleeper(name))
        started.extend(stack.children)
        raise RuntimeError("gateway never became healthy")

    assert Supervisor(NO_PREFECT, {}, grace=0).run(boot) == 1
    assert "could not start: gateway never became healthy" in capsys.readouterr().out
    assert [c.name for c in started] == ["prefect server", "gateway"]
    assert all(c.process is not None and c.process.poll() is not None for c in started)


@pytest.mark.usefixtures("signal_handlers")
def test_ctrl_c_stops_every_part_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C while supervising (here: SIGTERM, which the supervisor turns into the same stop)."""
    started: list[Child] = []

    def boot(stack: Supervisor) -> None:
        stack.start(_sleeper("prefect server"))
        stack.start(_sleeper("flow runner"))
        started.extend(stack.children)
        signal.raise_signal(signal.SIGTERM)

    assert Supervisor(NO_PREFECT, {}, grace=0).run(boot) == 0
    assert "stopping …" in capsys.readouterr().out
    assert len(started) == 2
    assert all(c.process is not None and c.process.poll() is not None for c in started)


def test_the_prefect_login_is_made_once_private_and_handed_to_server_and_clients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = prefect_environment(tmp_path, 4299)
    login = (tmp_path / "prefect-auth").read_text().strip()
    user, _, password = login.partition(":")
    assert user == "avatar-crm" and len(password) >= 32
    assert stat.S_IMODE((tmp_path / "prefect-auth").stat().st_mode) == 0o600
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == login
    assert login in capsys.readouterr().out  # said once, at its making
    again = prefect_environment(tmp_path, 4299)
    assert again["PREFECT_API_AUTH_STRING"] == login
    assert login not in capsys.readouterr().out


def test_a_command_talking_to_make_ups_prefect_sends_its_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployments.prefect_api import _stack_login
    from models import get_settings

    (tmp_path / "prefect-auth").write_text("avatar-crm:s3cret\n")
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PREFECT_PORT", "4299")
    get_settings.cache_clear()
    try:
        assert _stack_login("http://127.0.0.1:4299/api") == "avatar-crm:s3cret"
        assert _stack_login("http://prefect.example:4200/api") is None  # another server: its own login
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
