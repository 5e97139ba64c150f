"""Every deployment in prefect.yaml can be served: its flow imports, and its parameters still validate after
the runner pickles the flow into the run's process (string annotations broke exactly that once)."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.importtools import import_object
from prefect.utilities.templating import apply_values

from deployments.release import pinned_source, run_git
from deployments.serve import PREFECT_YAML, _load_flow, load_definitions
from models import get_settings

SAMPLE_PARAMETERS = {
    "booking-intake": {"event_id": 1},
    "wix-reconcile": {"since": "2026-11-25T09:00:00+10:00"},
    "reminder-sweep": {"now": "2026-11-25T09:00:00+10:00", "limit": 10},
    "sms-triage": {"event_id": 2},
    "delivery-receipts": {"event_ids": [3, 4]},
    "google-contacts-import": {"full": True},
    "email-events": {"event_ids": [5, 6]},
    "campaign-send": {
        "spec": {"name": "Spring recall", "channel": "email", "variants": [{"template_id": "d-" + "0" * 32}]}
    },
    "campaign-winner": {"campaign": "spring-recall", "winner": "B"},
    "retention": {"now": "2026-12-06T02:30:00+10:00", "dry_run": True},
    "daily-report": {"day": "2026-12-07"},
    "ops-alerts": {
        "failed_flow_run": "prefect.flow-run.2b1e5a4e-0c1f-4a57-9d2e-6f3c0f4b8a11",
        "reason": "reminder-sweep-stale",
    },
}


def test_every_deployment_has_sample_parameters_here() -> None:
    assert {spec["name"] for spec in load_definitions()} == set(SAMPLE_PARAMETERS)


@pytest.mark.parametrize("spec", load_definitions(), ids=lambda spec: spec["name"])
def test_parameters_validate_in_the_run_process(spec: dict) -> None:
    flow = pickle.loads(cloudpickle.dumps(_load_flow(spec["entrypoint"])))  # noqa: S301 (our own bytes)
    validated = flow.validate_parameters(SAMPLE_PARAMETERS[spec["name"]])
    assert set(validated) >= set(SAMPLE_PARAMETERS[spec["name"]])


# --- work-pool deployments: workers on other hosts fetch the code -----------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_steps(steps: list[dict[str, Any]], outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `prefect deploy` (build) and a flow run (pull) do with prefect.yaml's steps: each step's inputs
    templated with the earlier steps' outputs, its function called, its output kept under its `id`. (Prefect's
    own `run_steps` also resolves block references, which needs an API; these steps name none.)"""
    outputs = dict(outputs or {})
    for step in steps:
        [(name, inputs)] = step.items()
        inputs = apply_values(dict(inputs), outputs)
        step_id = inputs.pop("id")
        outputs[step_id] = import_object(name)(**inputs)
    return outputs


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Path]:
    """This repository as a git server would hold it: a bare clone (its committed history only)."""
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    bare = tmp_path / "origin.git"
    run_git(tmp_path, "clone", "--quiet", "--bare", str(REPO_ROOT), str(bare))
    yield bare
    get_settings.cache_clear()  # the test's AVATAR_CRM_GIT_URL goes with its environment


def test_the_pull_steps_clone_the_deployed_commit_wherever_the_worker_runs(
    origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prefect deploy`'s build step pins the deployer's HEAD; a later push does not change what a worker in
    another folder (another host) gets: the pull steps clone the pinned commit, and the flow loads from it."""
    config = yaml.safe_load(PREFECT_YAML.read_text())
    assert "set_working_directory" not in str(config["pull"])  # no path on the deployer's disk
    deployer = tmp_path / "deployer"
    run_git(tmp_path, "clone", "--quiet", str(origin), str(deployer))
    monkeypatch.setenv("AVATAR_CRM_GIT_URL", str(origin))
    monkeypatch.delenv("AVATAR_CRM_GIT_COMMIT", raising=False)
    get_settings.cache_clear()
    monkeypatch.chdir(deployer)
    outputs = _run_steps(config["build"])
    pinned = run_git(deployer, "rev-parse", "HEAD")
    assert outputs["source"] == {"repository": str(origin), "commit": pinned}

    # Work goes on after the deploy: a later commit reaches the repository.
    (deployer / "flows" / "retention.py").write_text("raise SystemExit('not the deployed code')\n")
    run_git(deployer, "-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-qam", "later")
    run_git(deployer, "push", "--quiet", "origin", "HEAD")
    with pytest.raises(ValueError, match="uncommitted changes"):  # and a dirty checkout is refused
        (deployer / "prefect.yaml").write_text("")
        pinned_source(str(deployer))

    worker = tmp_path / "worker-host"
    worker.mkdir()
    monkeypatch.chdir(worker)
    pulled = _run_steps(config["pull"], outputs)
    clone = worker / pulled["clone"]["directory"]
    assert run_git(clone, "rev-parse", "HEAD") == pinned
    monkeypatch.chdir(clone)
    flow = load_flow_from_entrypoint("flows/retention.py:retention")
    assert flow.name == "retention"
    assert Path(inspect.getfile(flow.fn)).resolve().is_relative_to(clone.resolve())


async def test_schedules_keep_the_clinics_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """prefect.yaml says Australia/Brisbane; a clinic in Sydney (CLINIC_TIMEZONE, daylight saving) gets its
    07:00 report at 07:00 Sydney time, summer and winter."""
    from deployments import serve

    added: dict[str, list] = {}

    class Recorder:
        async def aadd_flow(self, flow, *, name, schedules, **_: object) -> None:
            added[name] = schedules

    monkeypatch.setenv("CLINIC_TIMEZONE", "Australia/Sydney")
    get_settings.cache_clear()
    try:
        await serve.add_deployments(Recorder())  # type: ignore[arg-type]
    finally:
        get_settings.cache_clear()
    (report,) = added["daily-report"]
    assert report.cron == "0 7 * * *" and report.timezone == "Australia/Sydney"
    (sweep,) = added["reminder-sweep"]
    assert sweep.interval.total_seconds() == 60
