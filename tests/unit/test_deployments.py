"""Every deployment in prefect.yaml can be served: its flow imports, and its parameters still validate after
the runner pickles the flow into the run's process (string annotations broke exactly that once)."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

from deployments.serve import _load_flow, load_definitions

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
