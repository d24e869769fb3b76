"""The real OpenFeature Python SDK with the OFREP provider, against the running server."""

import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from experiments.services import experiment_start
from features.models import Environment
from features.sdk import exposures
from features.services import feature_create, sdk_key_create
from tests.factories import ExperimentFactory

# The live server reads the database from another thread, so the test's writes must be committed;
# serialized_rollback puts back the rows the migrations made (environments, groups) afterwards.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

DOMAIN = "platform-tests"


@pytest.fixture
def openfeature_client(live_server, fresh_decision_plane):
    """An OpenFeature client whose provider talks OFREP to the live server with a production SDK key."""
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    # The provider appends /ofrep/v1/evaluate/flags/{key} to the base URL and sends these headers.
    provider = OFREPProvider(live_server.url, headers_factory=lambda: {"Authorization": f"Bearer {raw}"})
    api.set_provider(provider, domain=DOMAIN)
    yield api.get_client(domain=DOMAIN)
    api.clear_providers()


@pytest.fixture
def flags():
    production = {"production": {"enabled": True}}
    feature_create(
        user=None,
        key="new_checkout",
        name="B",
        type="boolean",
        default_value=False,
        environments={
            "production": {
                "enabled": True,
                "rules": [{"type": "force", "condition": {"plan": "pro"}, "value": True}],
            }
        },
    )
    feature_create(
        user=None, key="headline", name="S", type="string", default_value="Hello", environments=production
    )
    feature_create(
        user=None, key="discount", name="F", type="number", default_value=0.25, environments=production
    )
    feature_create(
        user=None, key="multiplier", name="F1", type="number", default_value=1.0, environments=production
    )
    feature_create(
        user=None, key="max_items", name="I", type="number", default_value=12, environments=production
    )
    feature_create(
        user=None,
        key="theme",
        name="O",
        type="json",
        default_value={"color": "blue", "sizes": [1, 2]},
        environments=production,
    )


def pro_user() -> EvaluationContext:
    return EvaluationContext(targeting_key="user-42", attributes={"plan": "pro", "country": "US"})


@pytest.mark.parametrize(
    ("method", "key", "default", "expected", "reason"),
    [
        ("get_boolean_details", "new_checkout", False, True, Reason.TARGETING_MATCH),
        ("get_string_details", "headline", "fallback", "Hello", Reason.STATIC),
        ("get_float_details", "discount", 0.0, 0.25, Reason.STATIC),
        ("get_float_details", "multiplier", 0.0, 1.0, Reason.STATIC),
        ("get_integer_details", "max_items", 0, 12, Reason.STATIC),
        ("get_object_details", "theme", {}, {"color": "blue", "sizes": [1, 2]}, Reason.STATIC),
    ],
)
def test_openfeature_sdk__typed_flag__value_reason_variant(
    openfeature_client, flags, method, key, default, expected, reason
):
    details = getattr(openfeature_client, method)(key, default, pro_user())
    assert details.error_code is None, details.error_message
    assert details.value == expected and type(details.value) is type(expected)
    assert details.reason == reason
    assert details.variant
    assert details.flag_metadata["version"]


def test_openfeature_sdk__targeting_miss__default_reason(openfeature_client, flags):
    context = EvaluationContext(targeting_key="user-1", attributes={"plan": "free"})
    details = openfeature_client.get_boolean_details("new_checkout", True, context)
    assert (details.value, details.reason, details.variant) == (False, Reason.DEFAULT, "default")


def test_openfeature_sdk__experiment_flag__split_variant_and_exposure(openfeature_client):
    experiment = ExperimentFactory(key="headline_test")
    experiment_start(experiment=experiment, user=None)
    feature_create(
        user=None,
        key="cta",
        name="CTA",
        type="string",
        default_value="Buy",
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {
                        "type": "experiment",
                        "experiment": "headline_test",
                        "values": {"control": "Buy", "treatment": "Get"},
                    }
                ],
            }
        },
    )
    details = openfeature_client.get_string_details("cta", "x", pro_user())
    assert details.reason == Reason.SPLIT and details.variant in ("control", "treatment")
    assert details.value == {"control": "Buy", "treatment": "Get"}[details.variant]
    rows = exposures.buffer.pending()
    assert [(r["experiment"], r["variant"], r["unit_id"]) for r in rows] == [
        ("headline_test", details.variant, "user-42")
    ]


def test_openfeature_sdk__unknown_flag__flag_not_found_and_default(openfeature_client, flags):
    details = openfeature_client.get_boolean_details("nope", True, pro_user())
    assert (details.value, details.error_code, details.reason) == (
        True,
        ErrorCode.FLAG_NOT_FOUND,
        Reason.ERROR,
    )


def test_openfeature_sdk__no_targeting_key__targeting_key_missing(openfeature_client, flags):
    details = openfeature_client.get_boolean_details(
        "new_checkout", True, EvaluationContext(attributes={"plan": "pro"})
    )
    assert (details.value, details.error_code) == (True, ErrorCode.TARGETING_KEY_MISSING)


def test_openfeature_sdk__wrong_type_asked__type_mismatch(openfeature_client, flags):
    details = openfeature_client.get_integer_details("discount", 7, pro_user())
    assert (details.value, details.error_code) == (7, ErrorCode.TYPE_MISMATCH)


def test_openfeature_sdk__bad_key__general_error_and_default(live_server, flags):
    provider = OFREPProvider(live_server.url, headers_factory=lambda: {"Authorization": "Bearer sdk_wrong"})
    api.set_provider(provider, domain="bad-key")
    try:
        details = api.get_client(domain="bad-key").get_boolean_details("new_checkout", False, pro_user())
    finally:
        api.clear_providers()
    assert (details.value, details.error_code) == (False, ErrorCode.GENERAL)
    assert "unauthorized" in details.error_message
