"""The experiment list in the admin: status, days running, users so far and the primary metric's lift."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from analytics.models import ExperimentResult
from experiments.models import ExperimentStatus
from tests.analytics.test_admin_results import results_payload
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _row(page: str, name: str) -> str:
    start = page.index(name)
    return page[start : page.index("</tr>", start)]


def test_experiment_changelist__with_results__users_lift_and_results_link(admin_client):
    # Given a running experiment 3 days in, with results: +10% purchase rate, significant
    experiment = ExperimentFactory(name="Green button", status=ExperimentStatus.RUNNING,
                                   started_at=timezone.now() - dt.timedelta(days=3))  # fmt: skip
    ExperimentResult.objects.create(experiment=experiment, payload=results_payload(experiment.key),
                                    computed_at=timezone.now())  # fmt: skip

    # When
    page = admin_client.get(reverse("admin:experiments_experiment_changelist")).content.decode()

    # Then
    row = _row(page, "Green button")
    assert "Running" in row
    assert ">3.0<" in row  # days running
    assert "10,000" in row and "SRM" not in row
    assert "+10.0%" in row and "#198754" in row  # significant and good: green
    assert "Purchase rate" in row
    assert reverse("admin:analytics_experiment_results", args=[experiment.pk]) in row


def test_experiment_changelist__sample_ratio_mismatch__flagged_next_to_users(admin_client):
    experiment = ExperimentFactory(name="Banner", status=ExperimentStatus.RUNNING, started_at=timezone.now())
    ExperimentResult.objects.create(experiment=experiment, payload=results_payload(experiment.key, srm_ok=False),
                                    computed_at=timezone.now())  # fmt: skip
    row = _row(
        admin_client.get(reverse("admin:experiments_experiment_changelist")).content.decode(), "Banner"
    )
    assert "9,000" in row and "SRM" in row


def test_experiment_changelist__without_results__dashes_and_no_link_for_drafts(admin_client):
    ExperimentFactory(name="Draft idea")
    ExperimentFactory(name="Just started", status=ExperimentStatus.RUNNING, started_at=timezone.now())
    page = admin_client.get(reverse("admin:experiments_experiment_changelist")).content.decode()
    draft = _row(page, "Draft idea")
    assert draft.count(">–<") >= 3  # days running, users, primary metric
    assert "results</a>" not in draft
    started = _row(page, "Just started")
    assert ">0.0<" in started and "results</a>" in started


def test_experiment_changelist__not_significant_or_no_estimate__grey_or_dash(admin_client):
    experiment = ExperimentFactory(name="Flat", status=ExperimentStatus.RUNNING, started_at=timezone.now())
    payload = results_payload(experiment.key)
    payload["metrics"][0]["comparisons"][0].update(significant=False, direction="inconclusive")
    result = ExperimentResult.objects.create(
        experiment=experiment, payload=payload, computed_at=timezone.now()
    )
    row = _row(admin_client.get(reverse("admin:experiments_experiment_changelist")).content.decode(), "Flat")
    assert "+10.0%" in row and "#6c757d" in row
    payload["metrics"][0]["comparisons"][0]["relative"] = {"estimate": None, "ci": None}
    result.payload = payload
    result.save()
    row = _row(admin_client.get(reverse("admin:experiments_experiment_changelist")).content.decode(), "Flat")
    assert "+10.0%" not in row


def test_experiment_changelist__many_experiments__constant_queries(
    admin_client, django_assert_max_num_queries
):
    for index in range(5):
        experiment = ExperimentFactory(name=f"Exp {index}", status=ExperimentStatus.RUNNING,
                                       started_at=timezone.now())  # fmt: skip
        ExperimentResult.objects.create(experiment=experiment, payload=results_payload(experiment.key),
                                        computed_at=timezone.now())  # fmt: skip
    with django_assert_max_num_queries(12):  # the results come with the rows (select_related), not one each
        assert admin_client.get(reverse("admin:experiments_experiment_changelist")).status_code == 200
