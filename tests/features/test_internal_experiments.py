"""Internal experiments are owned: a holdout's (``holdout-<key>``) and a safe rollout's experiment
change only through their owner. The experiments API answers 409 naming the owner, the admin shows
the same reason, and the owner's own services still start, sync and stop them."""

import pytest
from django.urls import reverse

from experiments.models import Experiment, ExperimentStatus, ManagedBy
from features.holdouts.services import holdout_create, holdout_start, holdout_stop
from features.models import SafeRollout
from tests.experiments.test_admin_change import _change_form
from tests.factories import MetricFactory

pytestmark = pytest.mark.django_db

HOLDOUT_REASON = "This experiment belongs to holdout q1; stop the holdout instead."


@pytest.fixture
def holdout_experiment(fresh_decision_plane) -> Experiment:
    holdout = holdout_create(
        user=None, key="q1", name="Q1", percentage=5, metrics=[MetricFactory(key="buys")]
    )
    return holdout_start(holdout=holdout, user=None).experiment


def _detail(key: str) -> str:
    return reverse("experiment-detail", args=[key])


def _action(key: str, action: str) -> str:
    return reverse(f"experiment-{action}", args=[key])


def test_holdout_start__marks_its_experiment_as_the_holdouts(holdout_experiment):
    assert holdout_experiment.managed_by == ManagedBy.HOLDOUT
    assert holdout_experiment.managed_by_name == "q1"
    assert holdout_experiment.managed_problem == HOLDOUT_REASON


@pytest.mark.parametrize("action", ["pause", "stop", "archive"])
def test_experiments_api__lifecycle_of_a_holdouts_experiment__409_naming_the_holdout(
    holdout_experiment, pm_client, action
):
    response = pm_client.post(_action("holdout-q1", action), {}, format="json")

    assert response.status_code == 409, response.json()
    assert HOLDOUT_REASON in str(response.json())
    assert Experiment.objects.get(key="holdout-q1").status == ExperimentStatus.RUNNING


@pytest.mark.parametrize(
    "change",
    [
        {"traffic_allocation": 1.0},
        {"name": "Renamed"},
        {"variants": [{"key": "holdout", "weight": 3}, {"key": "general", "weight": 1}]},
    ],
)
def test_experiments_api__change_a_holdouts_experiment__409_and_nothing_changed(
    holdout_experiment, pm_client, change
):
    response = pm_client.patch(_detail("holdout-q1"), change, format="json")

    assert response.status_code == 409, response.json()
    assert HOLDOUT_REASON in str(response.json())
    experiment = Experiment.objects.get(key="holdout-q1")
    assert experiment.name == "Holdout Q1" and experiment.traffic_allocation == pytest.approx(0.1)
    assert [v.weight for v in experiment.variants.order_by("position")] == [1.0, 1.0]


def test_experiments_api__delete_a_stopped_holdouts_experiment__409_naming_the_holdout(
    holdout_experiment, admin_client
):
    holdout_stop(holdout=holdout_experiment.holdout, user=None)

    response = admin_client.delete(_detail("holdout-q1"))

    assert response.status_code == 409
    assert HOLDOUT_REASON in response.content.decode()
    assert Experiment.objects.filter(key="holdout-q1").exists()


def test_holdout_stop__the_owner_still_stops_its_experiment(holdout_experiment):
    holdout_stop(holdout=holdout_experiment.holdout, user=None)

    assert Experiment.objects.get(key="holdout-q1").status == ExperimentStatus.STOPPED


def test_admin__pause_button_on_a_holdouts_experiment__error_naming_the_holdout(
    holdout_experiment, admin_client
):
    url = reverse("admin:experiments_experiment_lifecycle", args=[holdout_experiment.pk, "pause"])

    response = admin_client.post(url, follow=True)

    assert HOLDOUT_REASON in response.content.decode()
    assert Experiment.objects.get(key="holdout-q1").status == ExperimentStatus.RUNNING


def test_admin__bulk_stop_of_a_holdouts_experiment__error_naming_the_holdout(
    holdout_experiment, admin_client
):
    response = admin_client.post(
        reverse("admin:experiments_experiment_changelist"),
        {"action": "bulk_stop", "_selected_action": [holdout_experiment.pk]},
        follow=True,
    )

    assert HOLDOUT_REASON in response.content.decode()
    assert Experiment.objects.get(key="holdout-q1").status == ExperimentStatus.RUNNING


def test_admin__delete_view_of_a_holdouts_experiment__refused_naming_the_holdout(
    holdout_experiment, admin_client
):
    holdout_stop(holdout=holdout_experiment.holdout, user=None)
    url = reverse("admin:experiments_experiment_delete", args=[holdout_experiment.pk])

    response = admin_client.post(url, {"post": "yes"}, follow=True)

    assert HOLDOUT_REASON in response.content.decode()
    assert Experiment.objects.filter(key="holdout-q1").exists()


def test_admin__save_the_change_form_of_a_holdouts_experiment__error_naming_the_holdout(
    holdout_experiment, admin_client
):
    url = reverse("admin:experiments_experiment_change", args=[holdout_experiment.pk])
    data = _change_form(holdout_experiment, name="Renamed")

    response = admin_client.post(url, data)

    assert response.status_code == 200  # the form again, with the reason
    assert HOLDOUT_REASON in response.content.decode()
    assert Experiment.objects.get(key="holdout-q1").name == "Holdout Q1"


def test_experiments_api__stop_a_safe_rollouts_experiment__409_naming_the_safe_rollout(pm_client):
    MetricFactory(key="errors")
    created = pm_client.post(
        reverse("feature-list"),
        {
            "key": "new_search",
            "name": "New search",
            "type": "boolean",
            "default_value": False,
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [
                        {
                            "type": "rollout",
                            "condition": {},
                            "value": True,
                            "coverage": 0.2,
                            "safe_rollout": {"metrics": ["errors"]},
                        }
                    ],
                }
            },
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    experiment = SafeRollout.objects.get().experiment

    response = pm_client.post(_action(experiment.key, "stop"), {}, format="json")

    assert response.status_code == 409
    assert (
        "This experiment belongs to safe rollout of new_search in production; change or remove the flag "
        "rule's safe rollout instead."
    ) in str(response.json())
    assert Experiment.objects.get(pk=experiment.pk).status == ExperimentStatus.RUNNING
