"""Experiments serving an environment that requires approval: start, stop, ramp-up and schedule are
held as change requests; pause and resume are not (an emergency brake needs no second pair of eyes)."""

import datetime as dt

import pytest
from django.urls import reverse

from experiments.models import Experiment
from experiments.services import experiment_start, experiment_update
from features.governance.models import ChangeRequest
from features.governance.services import experiment_protected_environments
from features.services import feature_create
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db


def action_url(key: str, action: str) -> str:
    return reverse(f"experiment-{action}", args=[key])


def approve(client, pk: int):
    return client.post(reverse("changerequest-approve", args=[pk]), {}, format="json")


def status_of(key: str) -> str:
    return Experiment.objects.get(key=key).status


def test_protected_environments__analysis_environments_and_flag_rules(production):
    analysed = ExperimentFactory(key="analysed")  # production by default
    staged = ExperimentFactory(key="staged", analysis_environments=["staging"])
    used = ExperimentFactory(key="used", analysis_environments=["staging"])
    feature_create(
        user=None,
        key="flag",
        name="Flag",
        environments={
            "production": {
                "rules": [
                    {
                        "type": "experiment",
                        "experiment": "used",
                        "values": {"control": False, "treatment": True},
                    }
                ]
            }
        },
    )
    assert experiment_protected_environments(analysed) == ["production"]
    assert experiment_protected_environments(staged) == []
    assert experiment_protected_environments(used) == ["production"]


def test_start__protected__202_then_started_on_approval(production, author_client, reviewer_client):
    ExperimentFactory(key="exp")
    response = author_client.post(action_url("exp", "start"), {}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["operation"], body["title"]) == ("experiment.start", "Start experiment “exp”")
    assert {"path": "status", "before": "draft", "after": "running"} in body["diff"]
    assert status_of("exp") == "draft"
    assert approve(reviewer_client, body["id"]).status_code == 200
    experiment = Experiment.objects.get(key="exp")
    assert experiment.status == "running" and experiment.started_at is not None
    record = experiment.history.latest("history_date")
    assert record.history_change_reason == f"change request #{body['id']} approved by bob"


def test_start__unprotected__200(production, author_client):
    ExperimentFactory(key="exp", analysis_environments=["staging"])
    assert author_client.post(action_url("exp", "start"), {}, format="json").status_code == 200
    assert status_of("exp") == "running"


def test_start__refused_transition__409_no_change_request(production, author_client):
    ExperimentFactory(key="exp", status="stopped")
    assert author_client.post(action_url("exp", "start"), {}, format="json").status_code == 409
    assert not ChangeRequest.objects.exists()


def test_stop__protected__decision_kept_until_approved(production, author_client, reviewer_client):
    experiment = ExperimentFactory(key="exp")
    experiment_start(experiment=experiment, user=None)
    response = author_client.post(
        action_url("exp", "stop"), {"decision_variant": "treatment", "reason": "+4%"}, format="json"
    )
    assert response.status_code == 202
    assert response.json()["params"] == {"decision_variant": "treatment", "reason": "+4%"}
    assert status_of("exp") == "running"
    assert approve(reviewer_client, response.json()["id"]).status_code == 200
    experiment.refresh_from_db()
    assert (experiment.status, experiment.decision_variant, experiment.decision_reason) == (
        "stopped",
        "treatment",
        "+4%",
    )


def test_pause_and_resume__protected__applied_at_once(production, author_client):
    experiment_start(experiment=ExperimentFactory(key="exp"), user=None)
    assert author_client.post(action_url("exp", "pause"), {}, format="json").status_code == 200
    assert author_client.post(action_url("exp", "resume"), {}, format="json").status_code == 200
    assert not ChangeRequest.objects.exists()


def test_ramp_up__protected__202_and_applied_on_approval(production, author_client, reviewer_client):
    experiment_start(experiment=ExperimentFactory(key="exp", traffic_allocation=0.2), user=None)
    response = author_client.patch(
        reverse("experiment-detail", args=["exp"]), {"traffic_allocation": 0.5}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["title"] == "Ramp experiment “exp” from 20% to 50%"
    assert body["params"] == {"traffic_allocation": 0.5}
    assert Experiment.objects.get(key="exp").traffic_allocation == 0.2
    assert approve(reviewer_client, body["id"]).status_code == 200
    assert Experiment.objects.get(key="exp").traffic_allocation == 0.5


def test_update__description_only__applied_at_once(production, author_client):
    experiment_start(experiment=ExperimentFactory(key="exp"), user=None)
    response = author_client.patch(
        reverse("experiment-detail", args=["exp"]), {"description": "Why"}, format="json"
    )
    assert response.status_code == 200
    assert not ChangeRequest.objects.exists()


def test_schedule__protected__needs_approval_and_runs_once_approved(
    production, author_client, reviewer_client
):
    ExperimentFactory(key="exp")
    start_at = "2099-01-01T09:00:00Z"
    response = author_client.patch(
        reverse("experiment-detail", args=["exp"]), {"scheduled_start_at": start_at}, format="json"
    )
    assert response.status_code == 202
    assert Experiment.objects.get(key="exp").scheduled_start_at is None
    assert approve(reviewer_client, response.json()["id"]).status_code == 200
    assert Experiment.objects.get(key="exp").scheduled_start_at == dt.datetime(2099, 1, 1, 9, tzinfo=dt.UTC)


def test_approve__experiment_changed_since__409(production, author_client, reviewer_client):
    experiment = ExperimentFactory(key="exp")
    pk = author_client.post(action_url("exp", "start"), {}, format="json").json()["id"]
    experiment_update(experiment=experiment, user=None, description="edited meanwhile")
    response = approve(reviewer_client, pk)
    assert response.status_code == 409
    assert response.json()["code"] == "stale_change_request"
    assert status_of("exp") == "draft"


def test_approve__start_no_longer_fits_layer__409_stays_open(production, author_client, reviewer_client):
    ExperimentFactory(key="exp", layer="home", traffic_allocation=0.6, analysis_environments=["production"])
    pk = author_client.post(action_url("exp", "start"), {}, format="json").json()["id"]
    holder = ExperimentFactory(
        key="holder", layer="home", traffic_allocation=0.6, analysis_environments=["staging"]
    )
    experiment_start(experiment=holder, user=None)
    response = approve(reviewer_client, pk)
    assert response.status_code == 409
    assert "Layer" in response.json()["detail"]
    assert ChangeRequest.objects.get(pk=pk).status == "open"
    assert status_of("exp") == "draft"


def test_hook__no_gate_registered__writes_apply_at_once(production):
    # experiments alone (the features app not installed): the hook runs the write itself.
    from experiments import approvals
    from features.governance.services import experiment_gate

    experiment = ExperimentFactory(key="exp")
    approvals.gate_register(None)
    try:
        approvals.experiment_write(
            experiment=experiment,
            operation="start",
            user=None,
            run=lambda: experiment_start(experiment=experiment, user=None),
        )
    finally:
        approvals.gate_register(experiment_gate)
    assert status_of("exp") == "running"
    assert not ChangeRequest.objects.exists()


def test_update__moves_into_protected_environment_while_ramping__held(production, author_client):
    experiment_start(
        experiment=ExperimentFactory(key="exp", traffic_allocation=0.2, analysis_environments=["staging"]),
        user=None,
    )
    response = author_client.patch(
        reverse("experiment-detail", args=["exp"]),
        {"analysis_environments": ["staging", "production"], "traffic_allocation": 0.5},
        format="json",
    )
    assert response.status_code == 202, response.json()
    assert response.json()["environments"] == ["production"]
    assert Experiment.objects.get(key="exp").analysis_environments == ["staging"]
    # Moving it without ramping up applies: only results read it.
    response = author_client.patch(
        reverse("experiment-detail", args=["exp"]), {"analysis_environments": ["production"]}, format="json"
    )
    assert response.status_code == 200
