"""The experiment change form: the same rules as the API, and nothing about the variants editable once started."""

import pytest
from django.urls import reverse

from experiments.models import Experiment
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _change_form(experiment: Experiment, **overrides) -> dict:
    """The change form as the page posts it, for an experiment with two variants."""
    variants = list(experiment.variants.all())
    data = {
        "name": experiment.name,
        "key": experiment.key,
        "traffic_allocation": str(experiment.traffic_allocation),
        "targeting": "{}",
        "layer": experiment.layer,
        "hash_seed": experiment.hash_seed,
        "engine": "frequentist",
        "alpha": "0.05",
        "sequential_tuning": "5000",
        "correction": "none",
        "srm_threshold": "0.001",
        "minimum_detectable_effect": "0.05",
        "analysis_environments": list(experiment.analysis_environments),
        "tags": "",
        "loaded_version": str(experiment.version),
        "variants-TOTAL_FORMS": str(len(variants)),
        "variants-INITIAL_FORMS": str(len(variants)),
        "variants-MIN_NUM_FORMS": "2",
        "variants-MAX_NUM_FORMS": "1000",
        "metric_links-TOTAL_FORMS": "0",
        "metric_links-INITIAL_FORMS": "0",
        "metric_links-MIN_NUM_FORMS": "0",
        "metric_links-MAX_NUM_FORMS": "1000",
    }
    for index, variant in enumerate(variants):
        data |= {
            f"variants-{index}-id": str(variant.pk),
            f"variants-{index}-experiment": str(experiment.pk),
            f"variants-{index}-position": str(variant.position),
            f"variants-{index}-key": variant.key,
            f"variants-{index}-name": variant.name,
            f"variants-{index}-weight": str(variant.weight),
            f"variants-{index}-payload": "null",
        }
    data.update(overrides)
    return data


def _change_url(experiment: Experiment) -> str:
    return reverse("admin:experiments_experiment_change", args=[experiment.pk])


@pytest.mark.parametrize("status", ["running", "paused"])
def test_admin_experiment_change__started__no_variant_field_editable(admin_client, status):
    experiment = ExperimentFactory(status=status)
    page = admin_client.get(_change_url(experiment)).content.decode()
    for field in ("key", "name", "weight", "payload", "position"):
        assert f'name="variants-0-{field}"' not in page, field
    assert 'name="traffic_allocation"' in page


def test_admin_experiment_change__running_ramp_up_with_renamed_variant__ramped_and_names_kept(admin_client):
    # Given a running experiment
    experiment = ExperimentFactory(status="running", traffic_allocation=0.2)
    # When the form is posted with a ramp-up and (as a crafted request could) a new variant name
    data = _change_form(experiment, traffic_allocation="0.6", **{"variants-0-name": "Blue"})
    response = admin_client.post(_change_url(experiment), data)
    # Then the ramp-up is saved, and the variant keeps its name
    assert response.status_code == 302, response.context["errors"] if response.context else response
    experiment.refresh_from_db()
    assert experiment.traffic_allocation == 0.6
    assert [v.name for v in experiment.variants.all()] == ["Control", "Treatment"]


@pytest.mark.parametrize("hash_seed", ["layer:home", "__home"])
def test_admin_experiment_change__draft_hash_seed_like_a_namespace__saved(admin_client, hash_seed):
    # GrowthBook's namespaces hash "__" + layer with hash version 1, experiments with version 2: no
    # seed can bucket units as a layer does, so no prefix is reserved any more.
    experiment = ExperimentFactory()
    response = admin_client.post(_change_url(experiment), _change_form(experiment, hash_seed=hash_seed))
    assert response.status_code == 302, response.context["errors"] if response.context else response
    experiment.refresh_from_db()
    assert experiment.hash_seed == hash_seed


def test_admin_experiment_change__draft_free_text_layer__saved_without_surrounding_spaces(admin_client):
    experiment = ExperimentFactory()
    response = admin_client.post(_change_url(experiment), _change_form(experiment, layer="  home page/v2 "))
    assert response.status_code == 302, response.context["errors"] if response.context else response
    experiment.refresh_from_db()
    assert experiment.layer == "home page/v2"
