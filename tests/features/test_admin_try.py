"""The feature page's "try it" box and its rule rows."""

import pytest
from django.urls import reverse

from experiments.services import experiment_start
from features.models import Feature
from features.sdk import cache as sdk_cache
from features.services import feature_create
from tests.factories import ExperimentFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_configuration():
    sdk_cache.memo_clear()
    yield
    sdk_cache.memo_clear()


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def checkout_flag(superuser) -> Feature:
    experiment = ExperimentFactory(key="checkout_button")
    experiment_start(experiment=experiment, user=None)
    return feature_create(
        user=superuser, key="new_checkout", name="New checkout", type="boolean", default_value=False,
        environments={
            "production": {"enabled": True, "rules": [
                {"type": "force", "condition": {"plan": "internal"}, "value": True},
                {"type": "rollout", "condition": {"country": "DE"}, "value": True, "coverage": 1.0},
                {"type": "experiment", "experiment": "checkout_button",
                 "values": {"control": False, "treatment": True}},
            ]},
            "staging": {"enabled": False},
        },
    )  # fmt: skip


def _try(client, feature, **params):
    return client.get(reverse("admin:features_feature_try", args=[feature.pk]), params)


@pytest.mark.parametrize(
    ("environment", "attributes", "value", "variant", "reason", "why"),
    [
        ("production", '{"plan": "internal"}', True, "rule-1", "TARGETING_MATCH", "Rule 1 of Production"),
        ("production", '{"country": "DE"}', True, "rule-2", "SPLIT", "A rollout rule: this unit is in"),
        ("staging", "{}", False, "disabled", "DISABLED", "off in this environment"),
        ("development", "", False, "disabled", "DISABLED", "off in this environment"),
    ],
)
def test_try_it__attributes_and_environment__value_variant_and_reason(
    admin_client, checkout_flag, environment, attributes, value, variant, reason, why
):
    response = _try(
        admin_client, checkout_flag, environment=environment, unit_id="user-42", attributes=attributes
    )
    body = response.json()
    assert response.status_code == 200
    assert (body["value"], body["variant"], body["reason"]) == (value, variant, reason)
    assert why in body["explanation"]


def test_try_it__experiment_rule__the_units_variant(admin_client, checkout_flag):
    from experiments.bucketing import assign_variant

    body = _try(
        admin_client, checkout_flag, environment="production", unit_id="user-7", attributes="{}"
    ).json()
    index = assign_variant(
        seed="checkout_button", unit_id="user-7", weights=[1.0, 1.0], traffic_allocation=1.0
    )
    expected = ["control", "treatment"][index]
    assert (body["variant"], body["value"], body["reason"]) == (expected, expected == "treatment", "SPLIT")
    assert f"“checkout_button” assigned this unit variant “{expected}”" in body["explanation"]


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        (
            {"environment": "production", "unit_id": "u", "attributes": "{plan: pro}"},
            "attributes",
            "Not valid JSON",
        ),
        (
            {"environment": "production", "unit_id": "u", "attributes": "[1, 2]"},
            "attributes",
            "a JSON object",
        ),
        ({"environment": "nowhere", "unit_id": "u"}, "environment", "valid choice"),
        ({"environment": "production"}, "unit_id", "required"),
    ],
)
def test_try_it__bad_input__400_with_the_field_and_why(admin_client, checkout_flag, params, field, fragment):
    response = _try(admin_client, checkout_flag, **params)
    assert response.status_code == 400
    assert fragment in " ".join(response.json()["errors"][field])


def test_try_it__user_without_view_permission__forbidden(client, checkout_flag):
    client.force_login(UserFactory(is_staff=True))
    response = _try(client, checkout_flag, environment="production", unit_id="u")
    assert response.status_code == 403


def test_feature_change_page__try_box_and_rules_in_words(admin_client, checkout_flag):
    page = admin_client.get(
        reverse("admin:features_feature_change", args=[checkout_flag.pk])
    ).content.decode()
    assert 'id="try-form"' in page
    assert reverse("admin:features_feature_try", args=[checkout_flag.pk]) in page
    assert '<option value="production" selected>' in page  # the first environment where the flag is on
    assert "Serve true to users where {&quot;plan&quot;: &quot;internal&quot;}" in page
    assert "Serve true to 100% of users where" in page
    assert "Experiment “checkout_button” decides for everyone: control → false, treatment → true" in page
    assert ">null<" not in page  # empty JSON boxes stay empty


def test_feature_add_page__no_try_box(admin_client):
    page = admin_client.get(reverse("admin:features_feature_add")).content.decode()
    assert 'id="try-form"' not in page
