"""Holdouts covering an environment that requires approval: starting, stopping and changing what a
running one serves are held as change requests (202 + Location) and applied on approval; a draft
serves nothing, so creating and changing one never waits."""

import pytest
from django.urls import reverse

from experiments.models import Experiment, ExperimentStatus
from features.config_file.apply import config_import
from features.config_file.export import config_export
from features.governance.models import ChangeRequest, ChangeRequestStatus
from features.holdouts.models import Holdout, HoldoutStatus
from features.holdouts.services import holdout_create, holdout_start, holdout_update
from features.models import Feature
from features.services import feature_create
from tests.factories import ExperimentFactory, MetricFactory

pytestmark = pytest.mark.django_db


def action_url(key: str, action: str) -> str:
    return reverse(f"holdout-{action}", args=[key])


def approve(client, pk: int):
    return client.post(reverse("changerequest-approve", args=[pk]), {}, format="json")


@pytest.fixture
def holdout(production, fresh_decision_plane) -> Holdout:
    for key in ("new_nav", "new_search"):
        feature_create(user=None, key=key, name=key, type="boolean", default_value=False)
    return holdout_create(
        user=None,
        key="q1",
        name="Q1",
        percentage=5,
        features=[Feature.objects.get(key="new_nav")],
        experiments=[ExperimentFactory(key="checkout")],
        metrics=[MetricFactory(key="buys")],
    )


def test_start__covers_production__202_with_location_then_started_on_approval(
    holdout, author_client, reviewer_client
):
    response = author_client.post(action_url("q1", "start"), {}, format="json")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert response["Location"] == reverse("changerequest-detail", args=[body["id"]])
    assert (body["operation"], body["title"]) == ("holdout.start", "Start holdout “q1” in production")
    assert body["target"] == {"type": "holdout", "key": "q1"}
    assert {"path": "status", "before": "draft", "after": "running"} in body["diff"]
    # Nothing happened yet: no internal experiment, nobody held out.
    assert Holdout.objects.get(key="q1").status == HoldoutStatus.DRAFT
    assert not Experiment.objects.filter(key="holdout-q1").exists()

    assert approve(reviewer_client, body["id"]).status_code == 200

    started = Holdout.objects.get(key="q1")
    assert started.status == HoldoutStatus.RUNNING
    assert started.experiment.key == "holdout-q1" and started.experiment.status == ExperimentStatus.RUNNING
    record = started.history.latest("history_date")
    assert record.history_change_reason == f"change request #{body['id']} approved by bob"


def test_start__only_unprotected_environments__200_at_once(holdout, author_client):
    holdout_update(holdout=holdout, user=None, environments=["staging"])

    response = author_client.post(action_url("q1", "start"), {}, format="json")

    assert response.status_code == 200, response.json()
    assert not ChangeRequest.objects.exists()


def test_stop__running_in_production__202_then_stopped_on_approval(holdout, author_client, reviewer_client):
    holdout_start(holdout=holdout, user=None)

    response = author_client.post(action_url("q1", "stop"), {}, format="json")

    assert response.status_code == 202
    assert Holdout.objects.get(key="q1").status == HoldoutStatus.RUNNING
    assert approve(reviewer_client, response.json()["id"]).status_code == 200
    assert Holdout.objects.get(key="q1").status == HoldoutStatus.STOPPED
    assert Experiment.objects.get(key="holdout-q1").status == ExperimentStatus.STOPPED


def test_change__running_holdout_holds_out_another_flag__202_then_applied(
    holdout, author_client, reviewer_client
):
    holdout_start(holdout=holdout, user=None)
    url = reverse("holdout-detail", args=["q1"])

    response = author_client.patch(url, {"features": ["new_nav", "new_search"]}, format="json")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["operation"] == "holdout.update"
    assert body["params"] == {"features": ["new_nav", "new_search"]}
    assert {"path": "features", "before": ["new_nav"], "after": ["new_nav", "new_search"]} in body["diff"]
    assert list(Holdout.objects.get(key="q1").features.values_list("key", flat=True)) == ["new_nav"]

    assert approve(reviewer_client, body["id"]).status_code == 200
    assert sorted(Holdout.objects.get(key="q1").features.values_list("key", flat=True)) == [
        "new_nav",
        "new_search",
    ]


def test_change__running_holdout_description_only__200_no_change_request(holdout, author_client):
    holdout_start(holdout=holdout, user=None)

    response = author_client.patch(
        reverse("holdout-detail", args=["q1"]), {"description": "Why we hold out"}, format="json"
    )

    assert response.status_code == 200
    assert not ChangeRequest.objects.exists()


def test_change__draft__200_no_change_request(holdout, author_client):
    response = author_client.patch(
        reverse("holdout-detail", args=["q1"]), {"features": ["new_search"]}, format="json"
    )

    assert response.status_code == 200
    assert not ChangeRequest.objects.exists()


def test_approve__holdout_changed_since__409_stale_nothing_applied(holdout, author_client, reviewer_client):
    response = author_client.post(action_url("q1", "start"), {}, format="json")
    holdout_update(holdout=holdout, user=None, percentage=8)

    answer = approve(reviewer_client, response.json()["id"])

    assert answer.status_code == 409
    assert "changed since change request" in answer.json()["detail"]
    assert Holdout.objects.get(key="q1").status == HoldoutStatus.DRAFT
    assert ChangeRequest.objects.get().status == ChangeRequestStatus.OPEN


def test_admin__start_action__held_with_a_link_to_the_change_request(holdout, client, author):
    author.is_staff = True
    author.save()
    client.force_login(author)

    response = client.post(
        reverse("admin:features_holdout_changelist"),
        {"action": "start_selected", "_selected_action": [holdout.pk]},
        follow=True,
    )

    change_request = ChangeRequest.objects.get()
    assert "requires approval" in response.content.decode()
    assert (
        reverse("admin:features_changerequest_change", args=[change_request.pk]) in response.content.decode()
    )
    assert Holdout.objects.get(key="q1").status == HoldoutStatus.DRAFT


def test_config_import_over_the_api__holdout_start_held__listed(holdout, author):
    document = config_export()
    document["holdouts"][0]["status"] = "running"

    result = config_import(document, user=author, hold_protected=True)

    assert [(item["kind"], item["key"]) for item in result.held] == [("holdout", "q1")]
    assert result.held[0]["change_request"]["operation"] == "holdout.start"
    assert Holdout.objects.get(key="q1").status == HoldoutStatus.DRAFT
