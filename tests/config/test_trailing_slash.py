"""Management API paths work with or without their trailing slash, for POSTs too (no redirect)."""

import pytest
from django.test import override_settings

from experiments.models import Experiment, ExperimentStatus
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [True, False])
def test_post_action__without_trailing_slash__runs_the_action(pm_client, debug):
    experiment = ExperimentFactory()

    with override_settings(DEBUG=debug):
        response = pm_client.post(f"/api/v1/experiments/{experiment.key}/start", format="json")

    assert response.status_code == 200, response.content
    assert Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.RUNNING


def test_post_create__without_trailing_slash__creates(pm_client):
    body = {"key": "slashless", "name": "Slashless", "type": "count", "event": "page_view"}

    response = pm_client.post("/api/v1/metrics", body, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["key"] == "slashless"


def test_post_exact_path__with_a_trailing_slash__answers_as_without(pm_client):
    body = {"baseline_mean": 0.1, "daily_units": 2000, "relative_lift": 0.05}

    with_slash = pm_client.post("/api/v1/power/", body, format="json")
    without = pm_client.post("/api/v1/power", body, format="json")

    assert with_slash.status_code == 200, with_slash.json()
    assert with_slash.json() == without.json()


def test_post_unknown_path__either_form__json_404(pm_client):
    for path in ("/api/v1/nothing-here", "/api/v1/nothing-here/"):
        response = pm_client.post(path, {}, format="json")

        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json")
