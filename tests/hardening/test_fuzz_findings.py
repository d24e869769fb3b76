"""What the schemathesis run (test_fuzz_api.py) found, each pinned by the test that catches it."""

import pytest
from rest_framework.authtoken.models import Token

from tests.factories import MetricFactory, ProductManagerFactory
from tests.hardening.conftest import TwoEnvironments

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm_token_client(client):
    token = Token.objects.create(user=ProductManagerFactory(password=None)).key
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    return client


@pytest.mark.parametrize("experiment", [{"a": 1}, ["a"], 3, None])
def test_exposures__experiment_not_a_string__item_rejected_not_500(two_environments, experiment):
    # Found: a dict or list as "experiment" crashed the variant lookup (unhashable) with a 500.
    sdk = TwoEnvironments.client(two_environments.key_a)
    body = {"exposures": [{"experiment": experiment, "variant": "control", "unit_id": "u-1"}]}
    response = sdk.post("/api/v1/exposures", body, format="json")
    assert response.status_code == 400
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
