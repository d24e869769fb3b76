"""Configuration import and approvals: over the API a change to an environment that requires approval
becomes a change request (202, listed in ``held``) and the rest applies; the command, an operator's
tool, applies everything directly."""

import io
import tempfile

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from features.config_file.export import config_export
from features.governance.models import ChangeRequest
from features.services import feature_create, feature_environments_as_dict
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def document(production):
    feature_create(
        user=None, key="dark_mode", name="Dark mode", environments={"production": {"enabled": True}}
    )
    document = config_export()
    flag = document["features"][0]
    flag["environments"]["production"]["enabled"] = False  # protected: held
    flag["environments"]["staging"]["enabled"] = True  # in the same write: held with it
    document["metrics"].append({"key": "signups", "name": "Signups", "type": "count", "event": "signup"})
    return document


def test_api_import__protected_change_held_as_change_request__the_rest_applied(document, api_client):
    api_client.force_authenticate(UserFactory(username="ops", is_staff=True, is_superuser=True))
    response = api_client.post(reverse("config-import"), document, format="json")
    assert response.status_code == 202, response.json()
    [held] = response.json()["held"]
    assert (held["kind"], held["key"]) == ("feature", "dark_mode")
    change_request = ChangeRequest.objects.get(pk=held["change_request"]["id"])
    assert change_request.status == "open" and change_request.target_key == "dark_mode"
    # Held as a whole write: neither environment changed until someone approves.
    served = feature_environments_as_dict(change_request.feature)
    assert (served["production"]["enabled"], served["staging"]["enabled"]) == (True, False)
    from metrics.models import Metric

    assert Metric.objects.filter(key="signups").exists()  # not protected: applied


def test_import_command__protected_change__applied_directly(document):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(yaml.safe_dump(document))
        handle.flush()
        call_command("import_config", handle.name, stdout=io.StringIO())
    assert not ChangeRequest.objects.exists()
    served = feature_environments_as_dict(document_flag())
    assert (served["production"]["enabled"], served["staging"]["enabled"]) == (False, True)


def document_flag():
    from features.models import Feature

    return Feature.objects.get(key="dark_mode")
