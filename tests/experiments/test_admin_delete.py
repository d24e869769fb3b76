"""Deleting experiments in the admin follows the service's rule, as the API does: only drafts and
archived experiments, one at a time or with the "delete selected" action."""

import pytest
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django.urls import reverse

from experiments.models import Experiment
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:experiments_experiment_changelist"
KEPT = ["running", "paused", "stopped"]
DELETABLE = ["draft", "archived"]


@pytest.fixture(params=["superuser", "product_manager"])
def admin_client(request, client):
    client.force_login(request.getfixturevalue(request.param))
    return client


def _messages(response) -> str:
    return " ".join(str(message) for message in get_messages(response.wsgi_request))


def _delete_url(experiment: Experiment) -> str:
    return reverse("admin:experiments_experiment_delete", args=[experiment.pk])


@pytest.mark.parametrize("status", KEPT)
def test_admin_experiment_delete_view__not_draft_or_archived__refused_with_the_reason(admin_client, status):
    experiment = ExperimentFactory(status=status, name="Green button", key="green_button")

    confirmation = admin_client.get(_delete_url(experiment))
    confirmed = admin_client.post(_delete_url(experiment), {"post": "yes"})

    change_url = reverse("admin:experiments_experiment_change", args=[experiment.pk])
    assert confirmation.status_code == 302 and confirmation.url == change_url
    assert confirmed.status_code == 302 and confirmed.url == change_url
    text = _messages(confirmed)
    assert "Could not delete “Green button (green_button)”" in text and "Only draft or archived" in text
    assert Experiment.objects.filter(pk=experiment.pk).exists()


@pytest.mark.parametrize("status", DELETABLE)
def test_admin_experiment_delete_view__draft_or_archived__deleted(admin_client, status):
    experiment = ExperimentFactory(status=status)

    assert admin_client.get(_delete_url(experiment)).status_code == 200  # the confirmation page
    response = admin_client.post(_delete_url(experiment), {"post": "yes"})

    assert response.status_code == 302
    assert not Experiment.objects.filter(pk=experiment.pk).exists()


@pytest.mark.parametrize(("status", "shown"), [("draft", True), ("archived", True), ("running", False)])
def test_admin_experiment_change_form__delete_link__only_when_it_can_be_deleted(admin_client, status, shown):
    experiment = ExperimentFactory(status=status)
    page = admin_client.get(reverse("admin:experiments_experiment_change", args=[experiment.pk]))
    assert (_delete_url(experiment) in page.content.decode()) is shown


def _bulk_delete(client, experiments, *, confirmed: bool):
    data = {
        "action": "delete_selected",
        helpers.ACTION_CHECKBOX_NAME: [str(e.pk) for e in experiments],
    }
    if confirmed:
        data["post"] = "yes"
    return client.post(reverse(CHANGELIST), data)


@pytest.mark.parametrize("status", KEPT)
@pytest.mark.parametrize("confirmed", [False, True])
def test_admin_experiment_bulk_delete__one_not_deletable__nothing_deleted_with_the_reason(
    admin_client, status, confirmed
):
    draft = ExperimentFactory(status="draft")
    kept = ExperimentFactory(status=status, name="Pricing banner", key="pricing_banner")

    response = _bulk_delete(admin_client, [draft, kept], confirmed=confirmed)

    assert response.status_code == 302
    text = _messages(response)
    assert "Nothing was deleted" in text
    assert (
        f"“Pricing banner (pricing_banner)”: Only draft or archived experiments can be deleted; this one is {status}"
        in text
    )
    assert Experiment.objects.filter(pk__in=[draft.pk, kept.pk]).count() == 2


def test_admin_experiment_bulk_delete__drafts_and_archived__confirmed_then_deleted(admin_client):
    experiments = [ExperimentFactory(status=status) for status in DELETABLE]

    confirmation = _bulk_delete(admin_client, experiments, confirmed=False)
    assert confirmation.status_code == 200 and b"Are you sure" in confirmation.content
    response = _bulk_delete(admin_client, experiments, confirmed=True)

    assert response.status_code == 302
    assert not Experiment.objects.filter(pk__in=[e.pk for e in experiments]).exists()


def test_admin_experiment_bulk_delete__running_selected__its_row_stays_after_a_crafted_confirmation(
    admin_client,
):
    # Even a POST that skips the confirmation page (post=yes at once) goes through the service's rule
    running = ExperimentFactory(status="running")
    response = _bulk_delete(admin_client, [running], confirmed=True)
    assert response.status_code == 302
    assert Experiment.objects.filter(pk=running.pk).exists()
