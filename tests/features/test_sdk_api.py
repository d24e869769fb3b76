"""POST /api/v1/assign and /api/v1/evaluate: SDK keys only, validation, shapes and exposures."""

import json
import socket

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experiments.services import experiment_pause, experiment_start
from features import config
from features.models import Environment
from features.sdk import cache as sdk_cache
from features.sdk import exposures
from features.sdk.serializers import UNIT_ID_MAX_LENGTH
from features.services import feature_create, sdk_key_create
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

ASSIGN_URL = "/api/v1/assign"
EVALUATE_URL = "/api/v1/evaluate"


@pytest.fixture(autouse=True)
def _fresh_decision_plane(fresh_decision_plane):
    """Every test starts from an empty decision plane (tests/conftest.py)."""


@pytest.fixture
def production() -> Environment:
    return Environment.objects.get(key="production")


@pytest.fixture
def sdk(production) -> APIClient:
    _, raw = sdk_key_create(environment=production)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def experiments():
    """checkout: running 50/50 with payloads; pricing: running, US only; paused_one; draft_one."""
    checkout = ExperimentFactory(key="checkout")
    checkout.variants.filter(key="treatment").update(payload={"color": "green"})
    experiment_start(experiment=checkout, user=None)
    pricing = ExperimentFactory(key="pricing", targeting={"country": "US"})
    experiment_start(experiment=pricing, user=None)
    paused = ExperimentFactory(key="paused_one")
    experiment_start(experiment=paused, user=None)
    experiment_pause(experiment=paused, user=None)
    ExperimentFactory(key="draft_one")


def post(client, url, body):
    return client.post(url, body, format="json")


# --- credentials -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [ASSIGN_URL, EVALUATE_URL])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer sdk_not_a_key"},
        {"HTTP_X_API_KEY": "sdk_not_a_key"},
        {"HTTP_AUTHORIZATION": "Token 0123456789abcdef"},
    ],
    ids=["none", "unknown-bearer", "unknown-x-api-key", "unknown-user-token"],
)
def test_sdk_endpoint__no_or_invalid_key__401_with_www_authenticate(url, headers):
    response = APIClient().post(url, {"unit_id": "u"}, format="json", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("url", [ASSIGN_URL, EVALUATE_URL])
def test_sdk_endpoint__user_token__403(url, user):
    token = Token.objects.create(user=user)
    response = APIClient().post(url, {"unit_id": "u"}, format="json", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 403


def test_sdk_endpoint__revoked_key__401(production):
    key, raw = sdk_key_create(environment=production)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert post(client, EVALUATE_URL, {"unit_id": "u"}).status_code == 200
    key.revoked = True
    key.save()
    assert post(client, EVALUATE_URL, {"unit_id": "u"}).status_code == 401


def test_sdk_endpoint__x_api_key__accepted(production):
    _, raw = sdk_key_create(environment=production)
    response = APIClient().post(EVALUATE_URL, {"unit_id": "u"}, format="json", HTTP_X_API_KEY=raw)
    assert response.status_code == 200


def test_sdk_endpoint__paths__exact_without_trailing_slash():
    assert reverse("sdk-assign") == ASSIGN_URL
    assert reverse("sdk-evaluate") == EVALUATE_URL


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [ASSIGN_URL, EVALUATE_URL])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "unit_id"),
        ({"unit_id": ""}, "unit_id"),
        ({"unit_id": None}, "unit_id"),
        ({"unit_id": "x" * (UNIT_ID_MAX_LENGTH + 1)}, "unit_id"),
        ({"unit_id": ["a"]}, "unit_id"),
        ({"unit_id": "u", "attributes": ["a"]}, "attributes"),
        ({"unit_id": "u", "attributes": "plan=pro"}, "attributes"),
        ({"unit_id": "u", "attributes": None}, "attributes"),
        ([{"unit_id": "u"}], "non_field_errors"),
    ],
    ids=[
        "missing",
        "empty",
        "null",
        "too-long",
        "list",
        "attributes-list",
        "attributes-string",
        "attributes-null",
        "body-list",
    ],
)
def test_sdk_endpoint__bad_body__400_with_field(sdk, url, body, field):
    response = post(sdk, url, body)
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("url", [ASSIGN_URL, EVALUATE_URL])
def test_sdk_endpoint__unit_id_of_256_characters__200(sdk, experiments, url):
    response = post(sdk, url, {"unit_id": "x" * 256, "log_exposure": False})
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("url", [ASSIGN_URL, EVALUATE_URL])
def test_sdk_endpoint__unit_id_of_257_characters__400_naming_unit_id(sdk, url):
    response = post(sdk, url, {"unit_id": "x" * 257})
    assert response.status_code == 400
    assert "256" in response.json()["unit_id"][0]


@pytest.mark.parametrize("url", [ASSIGN_URL, EVALUATE_URL])
def test_sdk_endpoint__malformed_json__400(sdk, url):
    response = sdk.post(url, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize("url", [ASSIGN_URL, EVALUATE_URL])
def test_sdk_endpoint__json_nested_too_deeply__400(sdk, url):
    body = '{"unit_id": "u", "attributes": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    response = sdk.post(url, data=body, content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"unit_id": "u", "experiments": "checkout"}, "experiments"),
        ({"unit_id": "u", "experiments": [None]}, "experiments"),
        ({"unit_id": "u", "log_exposure": "maybe"}, "log_exposure"),
    ],
)
def test_assign__bad_options__400_with_field(sdk, body, field):
    response = post(sdk, ASSIGN_URL, body)
    assert response.status_code == 400
    assert field in response.json()


# --- /api/v1/assign ----------------------------------------------------------------------------------


def test_assign__default__every_running_experiment(sdk, experiments):
    response = post(sdk, ASSIGN_URL, {"unit_id": "user-1", "attributes": {"country": "US"}})
    assert response.status_code == 200
    assignments = {a["experiment"]: a for a in response.json()["assignments"]}
    assert set(assignments) == {"checkout", "pricing"}
    for assignment in assignments.values():
        assert set(assignment) == {
            "experiment",
            "variant",
            "in_experiment",
            "reason",
            "payload",
            "hash_attribute",
            "hash_value",
        }
        assert assignment["in_experiment"] is True and assignment["reason"] == "ASSIGNED"
        assert assignment["variant"] in ("control", "treatment")
    checkout = assignments["checkout"]
    assert checkout["payload"] == ({"color": "green"} if checkout["variant"] == "treatment" else None)


def test_assign__explicit_keys__each_with_its_reason(sdk, experiments):
    body = {
        "unit_id": "user-1",
        "attributes": {"country": "FR"},
        "experiments": ["pricing", "paused_one", "draft_one", "nope", "checkout"],
    }
    assignments = post(sdk, ASSIGN_URL, body).json()["assignments"]
    assert [(a["experiment"], a["in_experiment"], a["reason"]) for a in assignments] == [
        ("pricing", False, "TARGETING_MISS"),
        ("paused_one", False, "NOT_RUNNING"),
        ("draft_one", False, "NOT_RUNNING"),
        ("nope", False, "NOT_FOUND"),
        ("checkout", True, "ASSIGNED"),
    ]
    assert all(a["variant"] is None and a["payload"] is None for a in assignments[:4])


def test_assign__same_unit__same_variant_every_time(sdk, experiments):
    first = post(sdk, ASSIGN_URL, {"unit_id": "user-9", "experiments": ["checkout"]}).json()
    sdk_cache.memo_clear()
    again = post(sdk, ASSIGN_URL, {"unit_id": "user-9", "experiments": ["checkout"]}).json()
    assert first == again


def test_assign__log_exposure__one_row_per_experiment_the_unit_is_in(sdk, experiments):
    body = {"unit_id": "user-1", "attributes": {"country": "FR", "age": 31}}
    response = post(sdk, ASSIGN_URL, body).json()
    checkout = next(a for a in response["assignments"] if a["experiment"] == "checkout")
    rows = exposures.buffer.pending()
    assert [(r["experiment"], r["variant"], r["unit_id"], r["environment"]) for r in rows] == [
        ("checkout", checkout["variant"], "user-1", "production")
    ]
    assert rows[0]["attributes"] == {"country": "FR", "age": "31"}
    assert rows[0]["timestamp"].endswith("+00:00")


def test_assign__log_exposure_false__nothing_logged(sdk, experiments):
    post(sdk, ASSIGN_URL, {"unit_id": "user-1", "log_exposure": False})
    assert exposures.buffer.pending() == []


def test_assign__warm__no_database_query(sdk, experiments, django_assert_num_queries):
    post(sdk, ASSIGN_URL, {"unit_id": "user-1"})
    with django_assert_num_queries(0):
        response = post(sdk, ASSIGN_URL, {"unit_id": "user-2", "attributes": {"country": "US"}})
    assert response.status_code == 200


# --- /api/v1/evaluate --------------------------------------------------------------------------------


@pytest.fixture
def flags(experiments):
    feature_create(user=None, key="gate", name="Gate", environments={"production": {"enabled": True}})
    feature_create(user=None, key="off", name="Off", environments={"production": {"enabled": False}})
    feature_create(
        user=None,
        key="color",
        name="Color",
        type="string",
        default_value="grey",
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {"type": "force", "condition": {"plan": "internal"}, "value": "red"},
                    {
                        "type": "experiment",
                        "experiment": "checkout",
                        "values": {"control": "blue", "treatment": "green"},
                    },
                ],
            }
        },
    )
    feature_create(
        user=None,
        key="ratio",
        name="Ratio",
        type="number",
        default_value=1.0,
        environments={
            "production": {"enabled": True},
            "staging": {"enabled": True, "rules": [{"type": "force", "value": 0.25}]},
        },
    )
    feature_create(
        user=None,
        key="gated",
        name="Gated",
        default_value=False,
        environments={"production": {"enabled": True, "rules": [{"type": "force", "value": True}]}},
        prerequisites=[{"feature": "gate", "value": True}],
    )


def test_evaluate__every_flag__value_variant_reason_and_version(sdk, flags):
    response = post(sdk, EVALUATE_URL, {"unit_id": "user-1", "attributes": {"plan": "internal"}})
    assert response.status_code == 200
    body = response.json()
    assert body["flags"] == {
        "color": {"value": "red", "variant": "rule-1", "reason": "TARGETING_MATCH"},
        "gate": {"value": False, "variant": "default", "reason": "STATIC"},
        "gated": {"value": False, "variant": "prerequisite-failed", "reason": "PREREQUISITE_FAILED"},
        "off": {"value": False, "variant": "disabled", "reason": "DISABLED"},
        "ratio": {"value": 1.0, "variant": "default", "reason": "STATIC"},
    }
    assert body["version"] == config.config_get(Environment.objects.get(key="production").pk).version
    assert b'"value":1.0' in response.content.replace(b" ", b"")
    assert exposures.buffer.pending() == []  # a force rule exposes nobody


def test_evaluate__experiment_rule__split_and_exposure(sdk, flags):
    body = post(sdk, EVALUATE_URL, {"unit_id": "user-1"}).json()
    color = body["flags"]["color"]
    assert color["reason"] == "SPLIT" and color["variant"] in ("control", "treatment")
    assert color["value"] == {"control": "blue", "treatment": "green"}[color["variant"]]
    assert [(r["experiment"], r["variant"]) for r in exposures.buffer.pending()] == [
        ("checkout", color["variant"])
    ]


def test_evaluate__key_of_another_environment__its_values(flags, django_assert_num_queries):
    _, raw = sdk_key_create(environment=Environment.objects.get(key="staging"))
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    body = post(client, EVALUATE_URL, {"unit_id": "user-1"}).json()
    assert body["flags"]["ratio"] == {"value": 0.25, "variant": "rule-1", "reason": "TARGETING_MATCH"}
    assert body["flags"]["color"]["reason"] == "DISABLED"


def test_evaluate__warm__no_database_query(sdk, flags, django_assert_num_queries):
    post(sdk, EVALUATE_URL, {"unit_id": "user-1"})
    with django_assert_num_queries(0):
        response = post(sdk, EVALUATE_URL, {"unit_id": "user-2", "attributes": {"plan": "pro"}})
    assert response.status_code == 200
    assert len(response.json()["flags"]) == 5


def test_evaluate__cache_down__still_answers(sdk, flags, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    settings.FLAGS_GENERATION_CHECK_SECONDS = 0.0
    sdk_cache.memo_clear()
    response = post(sdk, EVALUATE_URL, {"unit_id": "user-1"})
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["flags"]["gate"]["reason"] == "STATIC"
