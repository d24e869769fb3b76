"""Holdouts through the database: services and their rules, the API, the snapshot, and the SDK
endpoints (``/api/v1/evaluate``, ``/api/v1/assign``, OFREP, the GrowthBook payload) agreeing."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from config.exceptions import LockedWhileRunning, TransitionNotAllowed
from experiments.bucketing import bucket
from experiments.models import ExperimentStatus
from experiments.services import experiment_start
from features.config import snapshot_build
from features.holdouts.models import HoldoutStatus
from features.holdouts.services import holdout_create, holdout_start, holdout_stop, holdout_update
from features.models import Environment, Feature
from features.sdk import exposures
from features.services import feature_create, sdk_key_create
from tests.factories import ExperimentFactory, MetricFactory

pytestmark = pytest.mark.django_db


def held_out(unit_id: str, seed: str, percentage: float) -> bool:
    """GrowthBook's holdout rule: held out when the version-2 hash is below coverage / 2 = percentage."""
    return bucket(seed, unit_id, 2) < percentage / 100


@pytest.fixture
def world(fresh_decision_plane):
    experiment = experiment_start(experiment=ExperimentFactory(key="checkout"), user=None)
    feature_create(
        user=None,
        key="new_checkout",
        name="New checkout",
        type="boolean",
        default_value=False,
        environments={
            "production": {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": True}]}
        },
    )
    holdout = holdout_create(
        user=None,
        key="q1",
        name="Q1",
        percentage=10,
        hash_seed="q1-seed",
        features=[Feature.objects.get(key="new_checkout")],
        experiments=[experiment],
        metrics=[MetricFactory(key="purchases")],
    )
    return holdout


def test_holdout_start__creates_its_internal_experiment__two_equal_variants_at_twice_the_percentage(world):
    holdout = holdout_start(holdout=world, user=None)
    experiment = holdout.experiment
    assert holdout.status == HoldoutStatus.RUNNING and experiment.key == "holdout-q1"
    assert experiment.status == ExperimentStatus.RUNNING
    assert experiment.traffic_allocation == pytest.approx(0.2)
    assert experiment.hash_seed == "q1-seed" and experiment.hash_attribute == "id"
    assert [(v.key, v.weight) for v in experiment.variants.order_by("position")] == [
        ("holdout", 1.0),
        ("general", 1.0),
    ]
    assert [link.metric.key for link in experiment.metric_links.all()] == ["purchases"]
    assert experiment.analysis_environments == ["production"]


def test_holdout_update__percentage_after_start__refused_locked(world):
    holdout_start(holdout=world, user=None)
    with pytest.raises(LockedWhileRunning):
        holdout_update(holdout=world, user=None, percentage=20)
    holdout_update(holdout=world, user=None, description="still fine")


def test_holdout_create__flag_already_in_another_holdout__refused_naming_the_flag(world):
    with pytest.raises(ValidationError) as caught:
        holdout_create(user=None, key="q2", name="Q2", features=[Feature.objects.get(key="new_checkout")])
    assert "new_checkout" in str(caught.value.message_dict["features"])


def test_holdout_stop__twice__second_refused_and_nobody_held_out_any_more(world):
    holdout_start(holdout=world, user=None)
    production = Environment.objects.get(key="production")
    assert snapshot_build(production.pk)["holdouts"]
    holdout = holdout_stop(holdout=world, user=None)
    assert holdout.experiment.status == ExperimentStatus.STOPPED
    snapshot = snapshot_build(production.pk)
    assert snapshot["holdouts"] == {} and "holdout" not in snapshot["features"]["new_checkout"]
    with pytest.raises(TransitionNotAllowed):
        holdout_stop(holdout=world, user=None)


def test_snapshot__running_holdout__only_in_its_environments_and_its_experiment_not_an_experiment(world):
    holdout_start(holdout=world, user=None)
    production = snapshot_build(Environment.objects.get(key="production").pk)
    staging = snapshot_build(Environment.objects.get(key="staging").pk)
    assert production["holdouts"] == {
        "q1": {
            "experiment": "holdout-q1",
            "seed": "q1-seed",
            "coverage": pytest.approx(0.2),
            "hash_attribute": "id",
        }
    }
    assert production["features"]["new_checkout"]["holdout"] == "q1"
    assert production["experiments"]["checkout"]["holdout"] == "q1"
    assert "holdout-q1" not in production["experiments"]
    assert staging["holdouts"] == {} and "holdout" not in staging["features"]["new_checkout"]


def test_api__create_start_read__fields_and_lifecycle(world, admin_client):
    response = admin_client.post(
        reverse("holdout-list"),
        {
            "key": "api_hold",
            "name": "API",
            "percentage": 2.5,
            "metrics": ["purchases"],
            "environments": ["staging"],
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "draft" and response.json()["coverage"] == pytest.approx(0.05)
    started = admin_client.post(reverse("holdout-start", args=["api_hold"]))
    assert started.status_code == 200 and started.json()["experiment"] == "holdout-api_hold"
    again = admin_client.post(reverse("holdout-start", args=["api_hold"]))
    assert again.status_code == 409
    locked = admin_client.patch(
        reverse("holdout-detail", args=["api_hold"]), {"percentage": 9}, content_type="application/json"
    )
    assert locked.status_code == 409
    too_big = admin_client.post(
        reverse("holdout-list"),
        {"key": "big", "name": "Big", "percentage": 60},
        content_type="application/json",
    )
    assert too_big.status_code == 400 and "percentage" in too_big.json()


@pytest.fixture
def sdk(api_client):
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api_client


def test_sdk_endpoints__held_out_units__defaults_not_in_experiment_and_holdout_exposures(world, sdk):
    holdout_start(holdout=world, user=None)
    exposures.buffer.clear()
    units = [f"user-{i}" for i in range(600)]
    held = [u for u in units if held_out(u, "q1-seed", 10)]
    assert 30 < len(held) < 100
    for unit in units:
        flags = sdk.post(reverse("sdk-evaluate"), {"unit_id": unit}, format="json").json()["flags"]
        assignment = sdk.post(
            reverse("sdk-assign"), {"unit_id": unit, "experiments": ["checkout"]}, format="json"
        ).json()["assignments"][0]
        ofrep = sdk.post(
            "/ofrep/v1/evaluate/flags/new_checkout", {"context": {"targetingKey": unit}}, format="json"
        ).json()
        if unit in held:
            assert flags["new_checkout"] == {"value": False, "variant": "holdout", "reason": "HOLDOUT"}
            assert (assignment["in_experiment"], assignment["reason"]) == (False, "HOLDOUT")
            assert (ofrep["value"], ofrep["reason"], ofrep["variant"]) == (False, "DEFAULT", "holdout")
        else:
            assert flags["new_checkout"]["value"] is True
            assert assignment["in_experiment"] is True
            assert ofrep["value"] is True
    # Each endpoint exposed each measured unit to the holdout, in its group (evaluate, assign: 2 each).
    logged = {}
    for row in exposures.buffer.pending():
        if row["experiment"] == "holdout-q1":
            logged.setdefault(row["unit_id"], []).append(row["variant"])
    measured = [u for u in units if 0.5 <= bucket("q1-seed", u, 2) < 0.6]
    assert sorted(logged) == sorted(held + measured)
    for unit, variants in logged.items():
        assert variants == ["holdout" if unit in held else "general"] * 3  # evaluate, assign, OFREP


def test_api_delete__started_refused_draft_deleted_with_its_links(world, admin_client):
    holdout_start(holdout=world, user=None)
    refused = admin_client.delete(reverse("holdout-detail", args=["q1"]))
    assert refused.status_code == 409 and "draft" in refused.json()["detail"]
    holdout_create(user=None, key="q9", name="Q9", features=[Feature.objects.create(key="f9", name="F9")])
    assert admin_client.delete(reverse("holdout-detail", args=["q9"])).status_code == 204
    assert not Feature.objects.get(key="f9").holdout_links.exists()
    admin_page = admin_client.get(reverse("admin:features_holdout_delete", args=[world.pk]), follow=True)
    assert b"Only a draft holdout can be deleted" in admin_page.content
