"""A holdout cannot hold out an internal experiment (a safe rollout's, another holdout's): no rule assigns
units to one, so nobody would be held out. Refused by the service, the API and the admin form alike."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from features.holdouts.admin import HoldoutForm
from features.holdouts.models import Holdout
from features.holdouts.services import holdout_create, holdout_start, holdout_update
from features.models import SafeRollout
from features.services import feature_create
from tests.factories import ExperimentFactory, MetricFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def internal_experiments():
    """A safe rollout's internal experiment and a running holdout's, and one ordinary experiment."""
    guardrail = MetricFactory(key="checkout_errors")
    rule = {
        "type": "rollout",
        "condition": {},
        "value": True,
        "coverage": 0.2,
        "safe_rollout": {"metrics": [guardrail.key]},
    }
    feature_create(
        user=None,
        key="new_checkout",
        name="New checkout",
        type="boolean",
        environments={"production": {"enabled": True, "rules": [rule]}},
    )
    other = holdout_create(user=None, key="q1", name="Q1", percentage=5, metrics=[guardrail])
    holdout_start(holdout=other, user=None)
    other.refresh_from_db()
    return {
        "safe_rollout": SafeRollout.objects.get().experiment,
        "holdout": other.experiment,
        "ordinary": ExperimentFactory(key="checkout"),
    }


@pytest.mark.parametrize("kind", ["safe_rollout", "holdout"])
def test_api_create__internal_experiment__400_naming_experiments(admin_client, internal_experiments, kind):
    experiment = internal_experiments[kind]

    response = admin_client.post(
        reverse("holdout-list"),
        {"key": "q2", "name": "Q2", "percentage": 5, "experiments": [experiment.key]},
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert "internal experiment" in response.json()["experiments"][0]
    assert experiment.key in response.json()["experiments"][0]
    assert not Holdout.objects.filter(key="q2").exists()


def test_api_create__ordinary_experiment__accepted(admin_client, internal_experiments):
    response = admin_client.post(
        reverse("holdout-list"),
        {"key": "q2", "name": "Q2", "percentage": 5, "experiments": ["checkout"]},
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["experiments"] == ["checkout"]


@pytest.mark.parametrize("kind", ["safe_rollout", "holdout"])
def test_api_update__internal_experiment__400_naming_experiments(admin_client, internal_experiments, kind):
    holdout_create(user=None, key="q2", name="Q2", percentage=5)

    response = admin_client.patch(
        reverse("holdout-detail", args=["q2"]),
        {"experiments": [internal_experiments[kind].key]},
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert "internal experiment" in response.json()["experiments"][0]
    assert not Holdout.objects.get(key="q2").experiments.exists()


@pytest.mark.parametrize("kind", ["safe_rollout", "holdout"])
def test_services__internal_experiment__refused_naming_experiments(internal_experiments, kind):
    draft = holdout_create(user=None, key="q2", name="Q2", percentage=5)

    with pytest.raises(ValidationError) as created:
        holdout_create(user=None, key="q3", name="Q3", percentage=5, experiments=[internal_experiments[kind]])
    with pytest.raises(ValidationError) as updated:
        holdout_update(holdout=draft, user=None, experiments=[internal_experiments[kind]])

    assert set(created.value.message_dict) == {"experiments"}
    assert set(updated.value.message_dict) == {"experiments"}


def test_admin_form__safe_rollout_experiment__not_offered_and_refused(internal_experiments):
    safe_rollout_experiment = internal_experiments["safe_rollout"]
    form = HoldoutForm(
        data={
            "name": "Q2",
            "key": "q2",
            "percentage": 5,
            "environments": "[]",
            "held_out_experiments": [safe_rollout_experiment.pk],
        }
    )

    offered = set(form.fields["held_out_experiments"].queryset)
    assert safe_rollout_experiment not in offered and internal_experiments["holdout"] not in offered
    assert internal_experiments["ordinary"] in offered
    assert not form.is_valid() and "held_out_experiments" in form.errors
