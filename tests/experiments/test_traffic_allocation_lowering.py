"""A running or paused experiment's traffic allocation can be raised but not lowered: lowering it drops
units already assigned and biases the results. Refused by the service: 409 in the API, a form error in
the admin, with the reason and what to do instead."""

import pytest
from django.urls import reverse

from experiments.models import Experiment
from tests.experiments.test_admin_change import _change_form
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db


def _detail_url(experiment: Experiment) -> str:
    return reverse("experiment-detail", args=[experiment.key])


@pytest.mark.parametrize("status", ["running", "paused"])
def test_experiment_update__started_traffic_allocation_lowered__409_with_reason(pm_client, status):
    experiment = ExperimentFactory(status=status, traffic_allocation=0.5)

    response = pm_client.patch(_detail_url(experiment), {"traffic_allocation": 0.2}, format="json")

    assert response.status_code == 409, response.json()
    message = " ".join(response.json()["traffic_allocation"])
    assert "can only be raised" in message and "from 50% to 20%" in message
    assert "bias" in message and "start a new one" in message
    experiment.refresh_from_db()
    assert experiment.traffic_allocation == 0.5 and experiment.version == 1


@pytest.mark.parametrize(("status", "allocation"), [("running", 0.5), ("running", 0.8), ("draft", 0.1)])
def test_experiment_update__kept_raised_or_draft_lowered__200(pm_client, status, allocation):
    experiment = ExperimentFactory(status=status, traffic_allocation=0.5)

    response = pm_client.patch(_detail_url(experiment), {"traffic_allocation": allocation}, format="json")

    assert response.status_code == 200, response.json()
    experiment.refresh_from_db()
    assert experiment.traffic_allocation == allocation


@pytest.fixture
def admin_client(client, product_manager):
    client.force_login(product_manager)
    return client


def test_admin_experiment_change__running_traffic_allocation_lowered__form_error_and_kept(admin_client):
    experiment = ExperimentFactory(status="running", traffic_allocation=0.5)

    response = admin_client.post(
        reverse("admin:experiments_experiment_change", args=[experiment.pk]),
        _change_form(experiment, traffic_allocation="0.2"),
    )

    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors["traffic_allocation"])
    assert "can only be raised" in errors and "start a new one" in errors
    experiment.refresh_from_db()
    assert experiment.traffic_allocation == 0.5
