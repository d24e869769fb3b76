"""SDK input is taken as typed, never coerced (issue 11): ``"unit_id": 42`` became ``"42"``,
``"log_exposure": "yes"`` became true, ``"experiments": [1, 2]`` became strings and an attribute
``1e400`` became infinity. A wrong type is a 400 naming the field; OFREP answers its own error shape."""

import pytest
from rest_framework.test import APIClient

from experiments.services import experiment_start
from features.models import Environment
from features.sdk import exposures
from features.services import feature_create, sdk_key_create
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

ASSIGN, EVALUATE = "/api/v1/assign", "/api/v1/evaluate"
OFREP_FLAG, OFREP_BULK = "/ofrep/v1/evaluate/flags/dark_mode", "/ofrep/v1/evaluate/flags"


@pytest.fixture
def sdk(db, fresh_decision_plane) -> APIClient:
    experiment_start(experiment=ExperimentFactory(key="checkout"), user=None)
    feature_create(
        user=None,
        key="dark_mode",
        name="Dark mode",
        type="boolean",
        default_value=False,
        environments={
            "production": {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": True}]}
        },
    )
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def post_raw(client: APIClient, url: str, body: str):
    # Written by hand: 1e400 must reach the server as JSON says it, not as Python would encode it.
    return client.post(url, body, content_type="application/json")


@pytest.mark.parametrize("url", [ASSIGN, EVALUATE])
@pytest.mark.parametrize("unit_id", ["42", "4.2", "true", "null", '["u-1"]', '{"id": "u-1"}'])
def test_sdk_unit_id__not_a_string__400_names_unit_id(sdk, url, unit_id):
    response = post_raw(sdk, url, f'{{"unit_id": {unit_id}, "log_exposure": false}}')
    assert response.status_code == 400, response.content
    assert "unit_id" in response.json()


@pytest.mark.parametrize("value", ['"yes"', '"true"', "1", "0", '"on"', "null"])
def test_sdk_assign__log_exposure_not_a_boolean__400_and_nothing_logged(sdk, value):
    response = post_raw(sdk, ASSIGN, f'{{"unit_id": "u-1", "log_exposure": {value}}}')
    assert response.status_code == 400, response.content
    assert "log_exposure" in response.json()
    assert exposures.buffer.pending() == []


@pytest.mark.parametrize("experiments", ["[1, 2]", '["checkout", 2]', "[true]", "[null]", '"checkout"'])
def test_sdk_assign__experiments_not_a_list_of_strings__400_names_experiments(sdk, experiments):
    response = post_raw(sdk, ASSIGN, f'{{"unit_id": "u-1", "experiments": {experiments}}}')
    assert response.status_code == 400, response.content
    assert "experiments" in response.json()


def test_sdk_assign__valid_types__served(sdk):
    body = '{"unit_id": "u-1", "experiments": ["checkout", " checkout", ""], "log_exposure": false}'
    response = post_raw(sdk, ASSIGN, body)
    assert response.status_code == 200, response.content
    reasons = [a["reason"] for a in response.json()["assignments"]]
    assert reasons == ["ASSIGNED", "NOT_FOUND", "NOT_FOUND"]  # keys are looked up as sent


@pytest.mark.parametrize("url", [ASSIGN, EVALUATE])
@pytest.mark.parametrize(
    "attributes, where",
    [
        ('{"score": 1e400}', "attributes.score"),
        ('{"score": -1e400}', "attributes.score"),
        ('{"user": {"scores": [1, 1e999]}}', "attributes.user.scores[1]"),
    ],
)
def test_sdk_attributes__number_not_finite__400_names_where(sdk, url, attributes, where):
    response = post_raw(sdk, url, f'{{"unit_id": "u-1", "attributes": {attributes}, "log_exposure": false}}')
    assert response.status_code == 400, response.content
    assert where in str(response.json()["attributes"])


def test_sdk_attributes__deeply_nested__answered_not_a_crash(sdk):
    body = '{"unit_id": "u-1", "attributes": {"a": ' + "[" * 500 + "1e400" + "]" * 500 + "}}"
    response = post_raw(sdk, EVALUATE, body)
    assert response.status_code == 400


@pytest.mark.parametrize("url", [OFREP_FLAG, OFREP_BULK])
@pytest.mark.parametrize(
    "context, code, where",
    [
        ('{"targetingKey": "u-1", "score": 1e400}', "INVALID_CONTEXT", "context.score"),
        ('{"targetingKey": "u-1", "user": {"n": [-1e400]}}', "INVALID_CONTEXT", "context.user.n[0]"),
        ('{"targetingKey": 42}', "INVALID_CONTEXT", "targetingKey"),
    ],
)
def test_ofrep_context__wrong_type__400_in_ofrep_shape(sdk, url, context, code, where):
    response = post_raw(sdk, url, f'{{"context": {context}}}')
    assert response.status_code == 400, response.content
    assert response.json()["errorCode"] == code
    assert where in response.json()["errorDetails"]


@pytest.mark.parametrize(
    "url, body, field",
    [
        ("/api/v1/events", '{"events": [{"name": "purchase", "unit_id": 42}]}', "unit_id"),
        (
            "/api/v1/exposures",
            '{"exposures": [{"experiment": "checkout", "variant": "control", "unit_id": 42}]}',
            "unit_id",
        ),
    ],
)
def test_sdk_ingestion__unit_id_not_a_string__item_refused_naming_it(sdk, url, body, field):
    # Batches answer 202 with each refused item and why (the contract): nothing is coerced either.
    response = post_raw(sdk, url, body)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 0
    assert field in response.json()["rejected"][0]["errors"]


@pytest.mark.parametrize("url", ["/api/v1/events", "/api/v1/exposures"])
def test_sdk_ingestion__number_not_finite__400_malformed(sdk, url):
    field = url.rsplit("/", 1)[1]
    response = post_raw(sdk, url, f'{{"{field}": [{{"name": "purchase", "unit_id": "u", "value": 1e400}}]}}')
    assert response.status_code == 400
