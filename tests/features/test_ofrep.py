"""OFREP (OpenFeature Remote Evaluation Protocol): shapes, every error code, credentials, ETags."""

import json

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from experiments.services import experiment_start
from features.models import Environment
from features.sdk import exposures
from features.sdk.ofrep import OfrepError, ofrep_context
from features.sdk.serializers import UNIT_ID_MAX_LENGTH
from features.services import feature_create, feature_update, sdk_key_create
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

BULK_URL = "/ofrep/v1/evaluate/flags"


def flag_url(key: str) -> str:
    return f"/ofrep/v1/evaluate/flags/{key}"


@pytest.fixture(autouse=True)
def _fresh_decision_plane(fresh_decision_plane):
    """Every test starts from an empty decision plane (tests/conftest.py)."""


@pytest.fixture
def raw_key() -> str:
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    return raw


class Ofrep:
    """Posts raw bodies, as an OFREP provider does, with the SDK key as a bearer token."""

    def __init__(self, raw_key: str) -> None:
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}

    def post(self, url: str, body: object = None, *, raw: bytes | None = None, **headers):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(url, data=data, content_type="application/json", **self.headers, **headers)


@pytest.fixture
def ofrep(raw_key) -> Ofrep:
    return Ofrep(raw_key)


def context(unit_id: str = "user-1", **attributes) -> dict:
    return {"context": {"targetingKey": unit_id, **attributes}}


@pytest.fixture
def typed_flags():
    production = {"production": {"enabled": True}}
    feature_create(
        user=None, key="bool_flag", name="B", type="boolean", default_value=True, environments=production
    )
    feature_create(
        user=None, key="string_flag", name="S", type="string", default_value="green", environments=production
    )
    feature_create(
        user=None, key="float_flag", name="F", type="number", default_value=0.25, environments=production
    )
    feature_create(
        user=None, key="float_one", name="F1", type="number", default_value=1.0, environments=production
    )
    feature_create(
        user=None, key="int_flag", name="I", type="number", default_value=3, environments=production
    )
    feature_create(
        user=None,
        key="object_flag",
        name="O",
        type="json",
        default_value={"a": [1, 2.5], "b": None},
        environments=production,
    )


# --- single flag -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "json_text"),
    [
        ("bool_flag", True, "true"),
        ("string_flag", "green", '"green"'),
        ("float_flag", 0.25, "0.25"),
        ("float_one", 1.0, "1.0"),
        ("int_flag", 3, "3"),
        ("object_flag", {"a": [1, 2.5], "b": None}, '{"a":[1,2.5],"b":null}'),
    ],
)
def test_ofrep_flag__types__value_keeps_its_kind(ofrep, typed_flags, key, value, json_text):
    response = ofrep.post(flag_url(key), context())
    assert response.status_code == 200
    body = response.json()
    assert body["key"] == key
    assert body["value"] == value and type(body["value"]) is type(value)
    assert body["reason"] == "STATIC" and body["variant"] == "default"
    assert isinstance(body["metadata"], dict) and body["metadata"]["version"]
    assert f'"value":{json_text}' in response.content.decode().replace(" ", "")


@pytest.mark.parametrize(
    ("environment", "rules", "attributes", "expected"),
    [
        ({"enabled": False}, [], {}, ("DISABLED", "disabled", False)),
        (
            {"enabled": True},
            [{"type": "force", "condition": {"plan": "pro"}, "value": True}],
            {"plan": "pro"},
            ("TARGETING_MATCH", "rule-1", True),
        ),
        (
            {"enabled": True},
            [{"type": "force", "condition": {"plan": "pro"}, "value": True}],
            {"plan": "free"},
            ("DEFAULT", "default", False),
        ),
        (
            {"enabled": True},
            [{"type": "rollout", "value": True, "coverage": 1}],
            {},
            ("SPLIT", "rule-1", True),
        ),
    ],
    ids=["disabled", "targeting-match", "default", "split"],
)
def test_ofrep_flag__reasons__openfeature_reasons(ofrep, environment, rules, attributes, expected):
    feature_create(user=None, key="f", name="F", environments={"production": {**environment, "rules": rules}})
    body = ofrep.post(flag_url("f"), context(**attributes)).json()
    assert (body["reason"], body["variant"], body["value"]) == expected


def test_ofrep_flag__prerequisite_unmet__reason_default(ofrep):
    feature_create(user=None, key="gate", name="G", environments={"production": {"enabled": True}})
    feature_create(
        user=None,
        key="f",
        name="F",
        prerequisites=[{"feature": "gate", "value": True}],
        environments={"production": {"enabled": True, "rules": [{"type": "force", "value": True}]}},
    )
    body = ofrep.post(flag_url("f"), context()).json()
    assert (body["value"], body["reason"], body["variant"]) == (False, "DEFAULT", "prerequisite-failed")


def test_ofrep_flag__experiment_rule__variant_key_metadata_and_exposure(ofrep):
    experiment = ExperimentFactory(key="checkout")
    experiment_start(experiment=experiment, user=None)
    feature_create(
        user=None,
        key="color",
        name="C",
        type="string",
        default_value="grey",
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {
                        "type": "experiment",
                        "experiment": "checkout",
                        "values": {"control": "blue", "treatment": "green"},
                    }
                ],
            }
        },
    )
    body = ofrep.post(flag_url("color"), context("user-7", country="US")).json()
    assert body["reason"] == "SPLIT" and body["variant"] in ("control", "treatment")
    assert body["metadata"]["experiment"] == "checkout"
    rows = exposures.buffer.pending()
    assert [(r["experiment"], r["variant"], r["unit_id"], r["attributes"]) for r in rows] == [
        ("checkout", body["variant"], "user-7", {"country": "US"})
    ]


def test_ofrep_flag__unknown__404_flag_not_found(ofrep):
    response = ofrep.post(flag_url("nope"), context())
    assert response.status_code == 404
    body = response.json()
    assert (body["key"], body["errorCode"]) == ("nope", "FLAG_NOT_FOUND")
    assert body["errorDetails"]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "TARGETING_KEY_MISSING"),
        (b"{}", "TARGETING_KEY_MISSING"),
        (b'{"context": {}}', "TARGETING_KEY_MISSING"),
        (b'{"context": {"targetingKey": ""}}', "TARGETING_KEY_MISSING"),
        (b'{"context": {"targetingKey": null, "plan": "pro"}}', "TARGETING_KEY_MISSING"),
        (b'{"context": ["user-1"]}', "INVALID_CONTEXT"),
        (b'{"context": "user-1"}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": 42}}', "INVALID_CONTEXT"),
        (json.dumps(context("x" * (UNIT_ID_MAX_LENGTH + 1))).encode(), "INVALID_CONTEXT"),
        (b"{not json", "PARSE_ERROR"),
        (b"[1, 2]", "PARSE_ERROR"),
        (b'{"context": {"targetingKey": "u", "score": NaN}}', "PARSE_ERROR"),
        (b"\xff\xfe", "PARSE_ERROR"),
        (
            b'{"context": {"targetingKey": "u", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
            "PARSE_ERROR",
        ),
    ],
    ids=[
        "empty-body",
        "no-context",
        "empty-context",
        "empty-key",
        "null-key",
        "context-list",
        "context-string",
        "key-number",
        "key-too-long",
        "bad-json",
        "body-list",
        "nan",
        "not-utf8",
        "too-deep",
    ],
)
def test_ofrep_flag__bad_request__400_with_error_code(ofrep, typed_flags, raw, code):
    response = ofrep.post(flag_url("bool_flag"), raw=raw)
    assert response.status_code == 400
    body = response.json()
    assert (body["key"], body["errorCode"]) == ("bool_flag", code)
    assert body["errorDetails"]


@pytest.mark.parametrize("url", [flag_url("bool_flag"), BULK_URL])
def test_ofrep__targeting_key_of_256_characters__200(ofrep, typed_flags, url):
    # The unit id limit of every SDK endpoint, events and exposures included.
    response = ofrep.post(url, context("x" * 256))
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("url", [flag_url("bool_flag"), BULK_URL])
def test_ofrep__targeting_key_of_257_characters__400_invalid_context_naming_it(ofrep, typed_flags, url):
    response = ofrep.post(url, context("x" * 257))
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == "INVALID_CONTEXT"
    assert "targetingKey" in body["errorDetails"] and "256" in body["errorDetails"]


@pytest.mark.parametrize("url", [flag_url("bool_flag"), BULK_URL])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer sdk_wrong"},
        {"HTTP_X_API_KEY": "sdk_wrong"},
        {"HTTP_AUTHORIZATION": "Basic eDp5"},
    ],
    ids=["no-key", "wrong-bearer", "wrong-x-api-key", "other-scheme"],
)
def test_ofrep__no_or_invalid_key__401_without_body(typed_flags, url, headers):
    response = Client().post(url, data=json.dumps(context()), content_type="application/json", **headers)
    assert response.status_code == 401
    assert response.content == b""
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("url", [flag_url("bool_flag"), BULK_URL])
def test_ofrep__user_token__403_without_body(typed_flags, user, url):
    token = Token.objects.create(user=user)
    response = Client().post(
        url,
        data=json.dumps(context()),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )
    assert response.status_code == 403
    assert response.content == b""


@pytest.mark.parametrize("url", [flag_url("bool_flag"), BULK_URL])
def test_ofrep__get__405(ofrep, url):
    response = ofrep.client.get(url, **ofrep.headers)
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_ofrep_flag__warm__no_database_query(ofrep, typed_flags, django_assert_num_queries):
    ofrep.post(flag_url("bool_flag"), context())
    with django_assert_num_queries(0):
        response = ofrep.post(flag_url("float_one"), context("user-2", plan="pro"))
    assert response.status_code == 200


# --- bulk --------------------------------------------------------------------------------------------


def test_ofrep_bulk__every_flag__shapes_and_etag(ofrep, typed_flags):
    response = ofrep.post(BULK_URL, context())
    assert response.status_code == 200
    body = response.json()
    assert [f["key"] for f in body["flags"]] == [
        "bool_flag",
        "float_flag",
        "float_one",
        "int_flag",
        "object_flag",
        "string_flag",
    ]
    for item in body["flags"]:
        assert set(item) == {"key", "value", "reason", "variant", "metadata"}
    assert body["metadata"]["version"]
    etag = response["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and body["metadata"]["version"] in etag


@pytest.mark.parametrize("form", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
def test_ofrep_bulk__if_none_match_current__304_without_body(ofrep, typed_flags, form):
    etag = ofrep.post(BULK_URL, context())["ETag"]
    response = ofrep.post(BULK_URL, context(), HTTP_IF_NONE_MATCH=form.format(etag=etag))
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag


def test_ofrep_bulk__other_context__other_etag(ofrep, typed_flags):
    etag = ofrep.post(BULK_URL, context("user-1"))["ETag"]
    other = ofrep.post(BULK_URL, context("user-2"), HTTP_IF_NONE_MATCH=etag)
    assert other.status_code == 200 and other["ETag"] != etag
    attributes = ofrep.post(BULK_URL, context("user-1", plan="pro"), HTTP_IF_NONE_MATCH=etag)
    assert attributes.status_code == 200 and attributes["ETag"] != etag


def test_ofrep_bulk__after_an_edit__etag_changes_and_new_values_served(ofrep, typed_flags):
    from features.models import Feature

    etag = ofrep.post(BULK_URL, context())["ETag"]
    feature_update(feature=Feature.objects.get(key="bool_flag"), user=None, default_value=False)
    response = ofrep.post(BULK_URL, context(), HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response["ETag"] != etag
    assert next(f for f in response.json()["flags"] if f["key"] == "bool_flag")["value"] is False


def test_ofrep_bulk__unrelated_change__etag_kept(ofrep, typed_flags):
    etag = ofrep.post(BULK_URL, context())["ETag"]
    sdk_key_create(environment=Environment.objects.get(key="staging"))
    assert ofrep.post(BULK_URL, context(), HTTP_IF_NONE_MATCH=etag).status_code == 304


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"context": {}}', "TARGETING_KEY_MISSING"),
        (b'{"context": 1}', "INVALID_CONTEXT"),
        (b"{", "PARSE_ERROR"),
    ],
)
def test_ofrep_bulk__bad_request__400_error_without_key(ofrep, typed_flags, raw, code):
    response = ofrep.post(BULK_URL, raw=raw)
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == code and body["errorDetails"] and "key" not in body


def test_ofrep_bulk__no_flags__empty_list(ofrep):
    response = ofrep.post(BULK_URL, context())
    assert response.status_code == 200
    assert response.json()["flags"] == []


# --- the context parser on its own (the hot path parses with one shared decoder) -----------------------------
@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"context": {"targetingKey": "u", "a": {"b": [1, -1e400]}}}', "context.a.b[1]"),
        (b'{"context": {"targetingKey": "u", "score": 1E999}}', "context.score"),
    ],
)
def test_ofrep_context__number_too_large_for_a_double__invalid_context_naming_it(raw, where):
    with pytest.raises(OfrepError) as error:
        ofrep_context(raw)
    assert error.value.code == "INVALID_CONTEXT" and where in error.value.details


def test_ofrep_context__large_number_outside_the_context__ignored():
    unit_id, attributes, _ = ofrep_context(b'{"context": {"targetingKey": "u", "x": 1.5}, "other": 1e400}')
    assert (unit_id, attributes) == ("u", {"x": 1.5})


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "utf-32"])
def test_ofrep_context__any_json_encoding__as_json_loads_reads_it(encoding):
    text = '{"context": {"targetingKey": "ünï", "age": 30, "ratio": 0.25, "tags": ["a"]}}'
    assert ofrep_context(text.encode(encoding)) == (
        "ünï",
        {"age": 30, "ratio": 0.25, "tags": ["a"]},
        json.loads(text)["context"],
    )
