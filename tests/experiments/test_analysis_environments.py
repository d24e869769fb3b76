"""An experiment's analysed environments: whose traffic its results count (production by default)."""

import pytest
from django.urls import reverse

from experiments.models import Experiment, ExperimentStatus
from features.models import Environment
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("experiment-list")


def _payload(**overrides) -> dict:
    return {"key": "checkout_button", "name": "Checkout", "variants": [{"key": "control"}, {"key": "treatment"}],
            **overrides}  # fmt: skip


def test_experiment_create__no_environments_given__production(pm_client):
    response = pm_client.post(LIST_URL, _payload(), format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["analysis_environments"] == ["production"]
    assert Experiment.objects.get().analysis_environments == ["production"]


def test_experiment_create__existing_environments__201_and_stored(pm_client):
    response = pm_client.post(
        LIST_URL, _payload(analysis_environments=["staging", "production"]), format="json"
    )

    assert response.status_code == 201, response.json()
    assert Experiment.objects.get().analysis_environments == ["staging", "production"]


@pytest.mark.parametrize(
    ("environments", "fragment"),
    [
        (
            ["production", "nope"],
            "There is no environment “nope”; choose from development, staging, production.",
        ),
        ([], "one or more environment keys"),
        (["production", "production"], "each environment once"),
        ("production", "list"),
        ([1], "no environment “1”"),
        (None, "null"),
    ],
)
def test_experiment_create__bad_environments__400_naming_the_field(pm_client, environments, fragment):
    response = pm_client.post(LIST_URL, _payload(analysis_environments=environments), format="json")

    assert response.status_code == 400
    assert fragment.lower() in str(response.json()["analysis_environments"]).lower()
    assert not Experiment.objects.exists()


def test_experiment_update__environments_while_running__200_not_locked(pm_client):
    experiment = ExperimentFactory(key="running", status=ExperimentStatus.RUNNING)

    response = pm_client.patch(
        reverse("experiment-detail", args=["running"]), {"analysis_environments": ["staging"]}, format="json"
    )

    assert response.status_code == 200, response.json()
    experiment.refresh_from_db()
    assert experiment.analysis_environments == ["staging"]


def test_experiment_create__environment_added_later__accepted(pm_client):
    Environment.objects.create(key="qa", name="QA")

    response = pm_client.post(LIST_URL, _payload(analysis_environments=["qa"]), format="json")

    assert response.status_code == 201, response.json()


def test_admin_experiment_form__environments__one_checkbox_each_production_ticked(client, superuser):
    client.force_login(superuser)

    page = client.get(reverse("admin:experiments_experiment_add")).content.decode()

    for key in ("development", "staging", "production"):
        assert f'type="checkbox" name="analysis_environments" value="{key}"' in page
    assert 'value="production" id="id_analysis_environments_2" checked' in page
    assert 'value="staging" id="id_analysis_environments_1" checked' not in page


def test_admin_experiment_form_field__unknown_or_none_ticked__invalid():
    field = Experiment._meta.get_field("analysis_environments").formfield()

    assert field.clean(["staging", "production"]) == ["staging", "production"]
    for bad in (["nope"], []):
        with pytest.raises(Exception, match="valid choice|required"):
            field.clean(bad)
