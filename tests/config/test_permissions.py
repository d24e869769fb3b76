"""Who may read and write the management API: anonymous 401, no permission 403, product manager allowed."""

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from features.models import Environment
from features.services import sdk_key_create
from tests.factories import ExperimentFactory, FeatureFactory, MetricFactory

pytestmark = pytest.mark.django_db

RESOURCES = ["metric", "experiment", "feature", "environment"]


def _objects():
    return {
        "metric": MetricFactory(key="m"),
        "experiment": ExperimentFactory(key="e"),
        "feature": FeatureFactory(key="f"),
        "environment": Environment.objects.get(key="staging"),
    }


CREATE = {
    "metric": {"key": "new_metric", "name": "New", "type": "count", "event": "click"},
    "experiment": {"key": "new_exp", "name": "New", "variants": [{"key": "a"}, {"key": "b"}]},
    "feature": {"key": "new_flag", "name": "New", "type": "boolean", "default_value": False},
    "environment": {"key": "qa", "name": "QA"},
}


@pytest.mark.parametrize("resource", RESOURCES)
def test_management_api__anonymous__401_with_www_authenticate(api_client, resource):
    _objects()
    response = api_client.get(reverse(f"{resource}-list"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Token")
    assert api_client.post(reverse(f"{resource}-list"), CREATE[resource], format="json").status_code == 401


@pytest.mark.parametrize("resource", RESOURCES)
def test_management_api__user_without_permission__reads_but_403_on_write(api_client, user, resource):
    objects = _objects()
    api_client.force_authenticate(user)
    assert api_client.get(reverse(f"{resource}-list")).status_code == 200
    assert api_client.get(reverse(f"{resource}-detail", args=[objects[resource].key])).status_code == 200
    assert api_client.post(reverse(f"{resource}-list"), CREATE[resource], format="json").status_code == 403
    assert (
        api_client.patch(
            reverse(f"{resource}-detail", args=[objects[resource].key]), {"name": "x"}, format="json"
        )
    ).status_code == 403
    assert api_client.delete(reverse(f"{resource}-detail", args=[objects[resource].key])).status_code == 403


def test_experiment_lifecycle__user_without_change_permission__403(api_client, user):
    experiment = ExperimentFactory()
    api_client.force_authenticate(user)
    assert (
        api_client.post(reverse("experiment-start", args=[experiment.key]), {}, format="json").status_code
        == 403
    )


@pytest.mark.parametrize("resource", ["metric", "experiment", "feature"])
def test_management_api__product_manager_token__can_create_and_change(api_client, product_manager, resource):
    _objects()
    token = Token.objects.create(user=product_manager)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    created = api_client.post(reverse(f"{resource}-list"), CREATE[resource], format="json")
    assert created.status_code == 201, created.json()
    key = CREATE[resource]["key"]
    changed = api_client.patch(reverse(f"{resource}-detail", args=[key]), {"name": "Renamed"}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["name"] == "Renamed"


def test_environment__product_manager__read_only(api_client, product_manager):
    api_client.force_authenticate(product_manager)
    assert api_client.get(reverse("environment-list")).json()["count"] == 3
    assert (
        api_client.post(reverse("environment-list"), CREATE["environment"], format="json").status_code == 403
    )


def test_environment__superuser__creates_and_deletes(api_client, superuser):
    api_client.force_authenticate(superuser)
    assert (
        api_client.post(reverse("environment-list"), CREATE["environment"], format="json").status_code == 201
    )
    assert api_client.delete(reverse("environment-detail", args=["qa"])).status_code == 204


def test_environment_delete__with_sdk_keys__409(api_client, superuser):
    sdk_key_create(environment=Environment.objects.get(key="staging"))
    api_client.force_authenticate(superuser)
    assert api_client.delete(reverse("environment-detail", args=["staging"])).status_code == 409


def test_management_api__sdk_key__403_a_credential_that_is_not_a_users(api_client):
    # A valid key is not "no credentials" (401): it is a credential not allowed here (issue 11).
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api_client.get(reverse("experiment-list")).status_code == 403
    api_client.credentials(HTTP_X_API_KEY=raw)
    assert api_client.get(reverse("experiment-list")).status_code == 403


def test_management_api__bad_token__401(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token nope")
    assert api_client.get(reverse("metric-list")).status_code == 401
