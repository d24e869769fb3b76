"""What the decision plane cannot serve safely is refused when saved, by the API (400 naming the field
and the reason) and by the admin (an error on the form), through the same validation (issue 11):
patterns RE2 cannot run, variant weights that are not finite, positive and bounded, and rollout
coverage or traffic allocation that is not a finite number from 0 to 1."""

import json

import pytest
from django.urls import reverse

from experiments.models import MAX_VARIANT_WEIGHT, Experiment, Variant
from features.models import Environment, Feature
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

EXPERIMENTS = reverse("experiment-list")
FEATURES = reverse("feature-list")


def experiment_body(**overrides) -> dict:
    body = {
        "key": "checkout_button",
        "name": "Checkout button",
        "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}],
    }
    body.update(overrides)
    return body


def post_json(client, url: str, body: dict | str):
    # Encoded here: a number such as 1e400 must reach the server as written.
    return client.post(
        url, body if isinstance(body, str) else json.dumps(body), content_type="application/json"
    )


# --- variant weights ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "weights",
    [
        pytest.param([1e308, 1e308], id="overflowing-sum"),
        pytest.param([1, MAX_VARIANT_WEIGHT + 1], id="past-the-bound"),
        pytest.param([1, 0], id="zero"),
        pytest.param([1, -1], id="negative"),
    ],
)
def test_experiment_create__weight_not_positive_or_past_the_bound__400_names_variants(pm_client, weights):
    variants = [{"key": "control", "weight": weights[0]}, {"key": "treatment", "weight": weights[1]}]
    response = post_json(pm_client, EXPERIMENTS, experiment_body(variants=variants))
    assert response.status_code == 400, response.content
    assert "variants" in response.json()
    assert not Experiment.objects.exists()


def test_experiment_create__weight_at_the_bound__201(pm_client):
    variants = [{"key": "control", "weight": 1}, {"key": "treatment", "weight": MAX_VARIANT_WEIGHT}]
    assert post_json(pm_client, EXPERIMENTS, experiment_body(variants=variants)).status_code == 201


def test_experiment_create__weight_1e400__400_names_the_weight(pm_client):
    body = json.dumps(experiment_body()).replace('"weight": 1}]', '"weight": 1e400}]')
    response = post_json(pm_client, EXPERIMENTS, body)
    assert response.status_code == 400
    assert "weight" in json.dumps(response.json()["variants"])


def test_experiment_start__draft_with_overflowing_weights_stored__400_and_still_a_draft(pm_client):
    # Given a draft whose weights were stored before the bound existed
    experiment = ExperimentFactory(key="legacy")
    Variant.objects.filter(experiment=experiment).update(weight=1e308)
    # When it is started
    response = pm_client.post(reverse("experiment-start", args=["legacy"]), {}, format="json")
    # Then the start is refused with the reason, and nothing runs
    assert response.status_code == 400
    assert f"at most {MAX_VARIANT_WEIGHT:,}" in response.json()["variants"][0]
    experiment.refresh_from_db()
    assert experiment.status == "draft"


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("traffic_allocation", "1e400", "traffic_allocation"),
        ("traffic_allocation", '"NaN"', "traffic_allocation"),
        ("traffic_allocation", '"Infinity"', "traffic_allocation"),
    ],
)
def test_experiment_create__traffic_allocation_not_finite__400(pm_client, field, value, fragment):
    body = json.dumps(experiment_body())[:-1] + f', "{field}": {value}}}'
    response = post_json(pm_client, EXPERIMENTS, body)
    assert response.status_code == 400, response.content
    assert fragment in response.json()


# --- regular expressions RE2 cannot run ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pattern, fragment",
    [
        pytest.param("^(?=.*@corp)", "lookarounds", id="lookahead"),
        pytest.param(r"^(\w)\1", "not a pattern", id="backreference"),
        pytest.param("(.{0,100}){10}", "too complex", id="too-complex"),
    ],
)
def test_experiment_create__targeting_regex_re2_cannot_run__400_names_targeting(pm_client, pattern, fragment):
    response = post_json(pm_client, EXPERIMENTS, experiment_body(targeting={"email": {"$regex": pattern}}))
    assert response.status_code == 400
    assert fragment in str(response.json()["targeting"])


def feature_body(condition: dict | None = None, coverage: object = 0.5) -> dict:
    return {
        "key": "dark_mode",
        "name": "Dark mode",
        "type": "boolean",
        "default_value": False,
        "environments": {
            "production": {
                "enabled": True,
                "rules": [
                    {"type": "rollout", "condition": condition or {}, "value": True, "coverage": coverage}
                ],
            }
        },
    }


def test_feature_create__rule_regex_re2_cannot_run__400_names_environments(pm_client):
    response = post_json(pm_client, FEATURES, feature_body({"email": {"$regex": "(?<!corp)@"}}))
    assert response.status_code == 400
    assert "lookarounds" in str(response.json()["environments"])
    assert not Feature.objects.exists()


@pytest.mark.parametrize("coverage", ["1e400", "-1e400", '"NaN"', "1.5"])
def test_feature_create__rollout_coverage_not_a_finite_share__400(pm_client, coverage):
    body = json.dumps(feature_body(coverage=0.25)).replace('"coverage": 0.25', f'"coverage": {coverage}')
    response = post_json(pm_client, FEATURES, body)
    assert response.status_code == 400, response.content
    assert "coverage" in str(response.json()["environments"])


# --- the admin: same rules, as form errors -------------------------------------------------------------------------
@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def experiment_form(**overrides) -> dict:
    data = {
        "name": "Green button",
        "key": "green_button",
        "traffic_allocation": "1",
        "targeting": "{}",
        "engine": "frequentist",
        "alpha": "0.05",
        "sequential_tuning": "5000",
        "correction": "none",
        "srm_threshold": "0.001",
        "minimum_detectable_effect": "0.05",
        "variants-TOTAL_FORMS": "2",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "2",
        "variants-MAX_NUM_FORMS": "1000",
        "variants-0-position": "0",
        "variants-0-key": "control",
        "variants-0-weight": "1",
        "variants-0-payload": "null",
        "variants-1-position": "1",
        "variants-1-key": "treatment",
        "variants-1-weight": "1",
        "variants-1-payload": "null",
        "metric_links-TOTAL_FORMS": "0",
        "metric_links-INITIAL_FORMS": "0",
        "metric_links-MIN_NUM_FORMS": "0",
        "metric_links-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        pytest.param({"variants-1-weight": "1e308"}, f"at most {MAX_VARIANT_WEIGHT:,}", id="weight-1e308"),
        pytest.param({"variants-1-weight": "inf"}, "Enter a number", id="weight-infinite"),
        pytest.param({"traffic_allocation": "nan"}, "Enter a number", id="traffic-nan"),
        pytest.param(
            {"targeting": '{"email": {"$regex": "^(?=a)"}}'}, "lookarounds", id="targeting-lookahead"
        ),
    ],
)
def test_admin_experiment_add__unsafe_value__form_explains(admin_client, overrides, fragment):
    response = admin_client.post(reverse("admin:experiments_experiment_add"), experiment_form(**overrides))
    assert response.status_code == 200
    assert fragment in response.content.decode()
    assert not Experiment.objects.exists()


def feature_form(**overrides) -> dict:
    production = Environment.objects.get(key="production")
    data = {
        "name": "Dark mode",
        "key": "dark_mode",
        "type": "boolean",
        "default_value": "false",
        "environment_settings-TOTAL_FORMS": "0",
        "environment_settings-INITIAL_FORMS": "0",
        "environment_settings-MIN_NUM_FORMS": "0",
        "environment_settings-MAX_NUM_FORMS": "1000",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "rules-0-environment": str(production.pk),
        "rules-0-position": "0",
        "rules-0-type": "rollout",
        "rules-0-condition": "{}",
        "rules-0-value": "true",
        "rules-0-coverage": "0.3",
        "prerequisites-TOTAL_FORMS": "0",
        "prerequisites-INITIAL_FORMS": "0",
        "prerequisites-MIN_NUM_FORMS": "0",
        "prerequisites-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        pytest.param(
            {"rules-0-condition": '{"email": {"$regex": "(a)\\\\1"}}'}, "not a pattern", id="backreference"
        ),
        pytest.param({"rules-0-coverage": "inf"}, "Enter a number", id="coverage-infinite"),
        pytest.param({"rules-0-coverage": "nan"}, "Enter a number", id="coverage-nan"),
    ],
)
def test_admin_feature_add__unsafe_rule__form_explains(admin_client, overrides, fragment):
    response = admin_client.post(reverse("admin:features_feature_add"), feature_form(**overrides))
    assert response.status_code == 200
    assert fragment in response.content.decode()
    assert not Feature.objects.exists()
