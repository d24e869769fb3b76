"""Exposures logged by assignment and flag evaluation reach ClickHouse through the data plane."""

import pytest
from django.urls import reverse

from analytics import clickhouse as ch
from experiments.services import experiment_start
from features.models import Environment
from features.sdk import exposures
from features.services import feature_create, sdk_key_create
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sdk(api_client):
    exposures.flush()  # nothing left over from other tests
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api_client


def test_assign__log_exposure__each_unit_exposed_once_in_clickhouse(clickhouse, sdk):
    # Given a running experiment
    experiment_start(experiment=ExperimentFactory(key="checkout"), user=None)
    # When three units are assigned, one of them twice, and one without logging
    for unit in ["u1", "u2", "u1"]:
        response = sdk.post(
            reverse("sdk-assign"), {"unit_id": unit, "attributes": {"plan": "pro"}}, format="json"
        )
        assert response.status_code == 200, response.content
    sdk.post(reverse("sdk-assign"), {"unit_id": "u3", "log_exposure": False}, format="json")
    exposures.flush()
    # Then ClickHouse has one exposure per logged unit, in the variant the API answered
    rows = ch.query("SELECT unit_id, variant, environment, attributes FROM exposures_dedup ORDER BY unit_id")
    assert [r["unit_id"] for r in rows] == ["u1", "u2"]
    assert {r["environment"] for r in rows} == {"production"}
    assert rows[0]["attributes"] == {"plan": "pro"}
    answered = sdk.post(reverse("sdk-assign"), {"unit_id": "u1", "log_exposure": False}, format="json").json()
    assert rows[0]["variant"] == answered["assignments"][0]["variant"]


def test_evaluate__experiment_rule__exposure_logged(clickhouse, sdk):
    experiment = ExperimentFactory(key="checkout")
    experiment_start(experiment=experiment, user=None)
    feature_create(
        user=None,
        key="new_checkout",
        name="New checkout",
        type="boolean",
        default_value=False,
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {
                        "type": "experiment",
                        "experiment": "checkout",
                        "values": {"control": False, "treatment": True},
                    }
                ],
            }
        },
    )
    flags = sdk.post(reverse("sdk-evaluate"), {"unit_id": "u9"}, format="json").json()["flags"]
    exposures.flush()
    rows = ch.query("SELECT experiment, variant, unit_id FROM exposures_dedup")
    assert rows == [{"experiment": "checkout", "variant": flags["new_checkout"]["variant"], "unit_id": "u9"}]


def test_evaluate__monitored_rollout__each_matching_unit_exposed_in_its_arm(clickhouse, sdk):
    from features.models import FeatureRule
    from features.safe_rollouts import safe_rollout_start
    from tests.factories import MetricFactory

    feature = feature_create(
        user=None,
        key="new_checkout",
        name="New checkout",
        type="boolean",
        default_value=False,
        environments={
            "production": {
                "enabled": True,
                "rules": [{"type": "rollout", "condition": {"plan": "pro"}, "value": True, "coverage": 0.5}],
            }
        },
    )
    safe = safe_rollout_start(rule=FeatureRule.objects.get(feature=feature), metrics=[MetricFactory()])
    served = {}
    for unit in [f"u{i}" for i in range(20)]:
        flags = sdk.post(
            reverse("sdk-evaluate"), {"unit_id": unit, "attributes": {"plan": "pro"}}, format="json"
        ).json()["flags"]
        served[unit] = flags["new_checkout"]["value"]
    sdk.post(reverse("sdk-evaluate"), {"unit_id": "free-1", "attributes": {"plan": "free"}}, format="json")
    exposures.flush()
    rows = ch.query("SELECT experiment, variant, unit_id FROM exposures_dedup ORDER BY unit_id")
    # Every matching unit, in the arm of what it was served; the unit the rule does not match, not at all.
    assert {r["unit_id"]: r["variant"] for r in rows} == {
        unit: "treatment" if value else "control" for unit, value in served.items()
    }
    assert {r["experiment"] for r in rows} == {safe.experiment.key}
    assert set(served.values()) == {True, False}
