"""What the schemathesis run (test_fuzz_api.py) found, each pinned by the test that catches it."""

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from analytics import clickhouse as ch
from analytics.ingestion import services as ingestion
from analytics.models import SpoolBatch
from config.exceptions import VALUE_NOT_STORABLE
from tests.factories import MetricFactory, ProductManagerFactory
from tests.hardening.conftest import TwoEnvironments

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm_token_client(client):
    token = Token.objects.create(user=ProductManagerFactory(password=None)).key
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    return client


@pytest.mark.parametrize("experiment", [{"a": 1}, ["a"], 3, None, "exp\x00nul", "no such/key", "x" * 300])
def test_exposures__experiment_not_a_string__item_rejected_not_500(two_environments, experiment):
    # Found: a dict or list as "experiment" crashed the variant lookup (unhashable) with a 500, and
    # on PostgreSQL so did a key with a NUL character (text cannot hold one).
    sdk = TwoEnvironments.client(two_environments.key_a)
    body = {"exposures": [{"experiment": experiment, "variant": "control", "unit_id": "u-1"}]}
    response = sdk.post("/api/v1/exposures", body, format="json")
    assert response.status_code == 202  # a batch with every item rejected is still a 202 (CONTRACT)
    assert response.json()["accepted"] == 0 and response.json()["rejected"][0]["index"] == 0


def test_search__nul_character__400_object_body(pm_token_client):
    # Found: DRF's search filter answered a bare list (["Null characters are not allowed."]).
    response = pm_token_client.get("/api/v1/metrics/", {"search": "a\x00b"})
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Null characters are not allowed."]}


@pytest.mark.parametrize("path", ["/api/v1/metrics/a.b/", "/api/v1/features/a/b/", "/api/v1/nothing-here"])
def test_api_url_matching_no_route__json_404(pm_token_client, path):
    # Found: a key with a dot or a slash matched no route and got Django's HTML 404 page.
    response = pm_token_client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_ofrep_flag_key_with_a_slash__ofrep_flag_not_found(two_environments):
    response = TwoEnvironments.client(two_environments.key_a).post(
        "/ofrep/v1/evaluate/flags/a/b", {"context": {"targetingKey": "u"}}, format="json"
    )
    assert response.status_code == 404
    assert response.json() == {
        "key": "a/b",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "There is no flag a/b.",
    }


def test_page_outside_the_api__django_plain_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "text/html" in response["Content-Type"]


def test_schema__owner_without_one__documented_nullable_and_served_null(pm_token_client):
    # Found: objects made by a service (no user) serve "owner": null, which the schema called a string.
    MetricFactory(key="orphan")
    schema = pm_token_client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    for component in ("Metric", "Experiment", "Feature"):
        assert schema["components"]["schemas"][component]["properties"]["owner"].get("nullable") is True
    assert pm_token_client.get("/api/v1/metrics/orphan/").json()["owner"] is None


def test_schema__management_operations__document_their_error_answers(pm_token_client):
    # Found: only successes were documented; every 400/401/403/404/409 was "undocumented".
    schema = pm_token_client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    create = schema["paths"]["/api/v1/metrics/"]["post"]["responses"]
    assert {"201", "400", "401", "403", "409", "503"} <= set(create)
    assert create["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    listing = schema["paths"]["/api/v1/metrics/"]["get"]["responses"]
    assert {"200", "400", "401", "403", "404"} <= set(listing) and "409" not in listing


def test_events__nul_character__item_rejected_others_spooled_while_clickhouse_is_down(
    two_environments, clickhouse, clickhouse_faults
):
    # Found: with ClickHouse down, a NUL in any string made the spool (PostgreSQL jsonb cannot hold
    # one) fail the whole request, and every request sharing its group commit, with a 500.
    clickhouse_faults.unavailable(methods=("insert",))
    sdk = TwoEnvironments.client(two_environments.key_a)
    events = [
        {"name": "purchase", "unit_id": "u-1"},
        {"name": "purchase", "unit_id": "u-2", "properties": {"note": "a\x00b"}},
        {"name": "bad\x00name", "unit_id": "u-3"},
        {"name": "", "unit_id": "u-4"},
        {"name": "purchase", "unit_id": "u-5"},
    ]
    response = sdk.post("/api/v1/events", {"events": events}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3]
    assert body["rejected"][0]["errors"] == {"item": "Strings may not contain the NUL character (\\u0000)."}
    assert "name" in body["rejected"][2]["errors"]


def test_exposures__nul_character__item_rejected(two_environments, clickhouse):
    from experiments.services import experiment_start
    from tests.factories import ExperimentFactory

    experiment_start(experiment=ExperimentFactory(key="exp"), user=None)
    sdk = TwoEnvironments.client(two_environments.key_a)
    exposures = [
        {"experiment": "exp", "variant": "control", "unit_id": "u\x00"},
        {"experiment": "exp", "variant": "control", "unit_id": "u-2"},
    ]
    response = sdk.post("/api/v1/exposures", {"exposures": exposures}, format="json")
    assert response.status_code == 202
    assert response.json() == {
        "accepted": 1,
        "rejected": [
            {"index": 0, "errors": {"item": "Strings may not contain the NUL character (\\u0000)."}}
        ],
    }


def test_exposures_write__nul_in_an_attribute_while_clickhouse_is_down__spooled(
    clickhouse, clickhouse_faults
):
    from analytics.ingestion.services import exposures_write

    # An exposure logged by evaluate/assign/OFREP keeps a NUL in an attribute: the spool stores JSON
    # text (PostgreSQL's jsonb would refuse it), and the drain brings it to ClickHouse unchanged.
    outage = clickhouse_faults.unavailable(methods=("insert",))
    row = {"experiment": "exp", "variant": "control", "unit_id": "u-1", "attributes": {"plan": "a\x00b"}}
    assert exposures_write(rows=[row]).spooled == 1
    outage.stop()
    ingestion.clickhouse_breaker.reset()
    SpoolBatch.objects.update(next_attempt_at=timezone.now())
    ingestion.spool_drain()
    rows = ch.query("SELECT attributes FROM exposures_dedup")
    assert rows == [{"attributes": {"plan": "a\x00b"}}]


@pytest.mark.parametrize(
    "body",
    [
        {"key": "nul_default", "name": "N", "type": "string", "default_value": "a\x00b"},
        {"key": "nul_json_key", "name": "N", "type": "json", "default_value": {"k\x00": 1}},
        {
            "key": "nul_rule",
            "name": "N",
            "default_value": False,
            "environments": {
                "production": {"rules": [{"type": "force", "condition": {"plan": "\x00"}, "value": True}]}
            },
        },
    ],
)
def test_management_json_value_with_nul__never_a_500(pm_token_client, body):
    # Found on PostgreSQL: jsonb cannot hold NUL, and the DataError surfaced as a 500.
    response = pm_token_client.post("/api/v1/features/", body, content_type="application/json")
    if connection.vendor == "postgresql":
        assert response.status_code == 400
        assert response.json() == {"detail": VALUE_NOT_STORABLE}
    else:
        assert response.status_code == 201, response.content  # SQLite stores it
