"""Change requests tell webhooks: "opened" when a write is held, "approved" when another user
approves it; a held write's own flag.changed is not sent (nothing was written), the applied one is."""

import json

import pytest
from django.urls import reverse

from features.services import feature_create
from features.webhooks.models import EventType, WebhookDelivery
from features.webhooks.services import webhook_create

pytestmark = pytest.mark.django_db


def run_commit_callbacks(callbacks) -> None:
    """The commit's callbacks, by hand (the test's transaction never commits)."""
    for callback in callbacks:
        callback()


def test_change_request__opened_and_approved__webhook_events(
    production, author, author_client, reviewer_client, receiver, django_capture_on_commit_callbacks
):
    feature_create(
        user=author, key="dark_mode", name="Dark mode", environments={"production": {"enabled": True}}
    )
    webhook_create(
        user=None,
        name="approvals",
        url=receiver.url,
        event_types=[
            EventType.CHANGE_REQUEST_OPENED,
            EventType.CHANGE_REQUEST_APPROVED,
            EventType.FLAG_CHANGED,
        ],
    )

    with django_capture_on_commit_callbacks() as committed:
        held = author_client.patch(
            reverse("feature-detail", args=["dark_mode"]),
            {"environments": {"production": {"enabled": False}}},
            format="json",
        )
    assert held.status_code == 202
    run_commit_callbacks(committed)
    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["change_request.opened"]
    opened = json.loads(WebhookDelivery.objects.get().body)["data"]["change_request"]
    assert (opened["id"], opened["target_key"], opened["created_by"]) == (
        held.json()["id"],
        "dark_mode",
        "alice",
    )

    with django_capture_on_commit_callbacks() as committed:
        approved = reviewer_client.post(
            reverse("changerequest-approve", args=[held.json()["id"]]), {}, format="json"
        )
    assert approved.status_code == 200, approved.json()
    run_commit_callbacks(committed)
    types = list(WebhookDelivery.objects.order_by("id").values_list("event_type", flat=True))
    assert types == ["change_request.opened", "flag.changed", "change_request.approved"]
    approval = json.loads(WebhookDelivery.objects.get(event_type="change_request.approved").body)["data"]
    assert approval["changed_by"] == "bob" and approval["change_request"]["reviewed_by"] == "bob"
    flag = json.loads(WebhookDelivery.objects.get(event_type="flag.changed").body)["data"]
    assert flag["feature"]["environments"]["production"]["enabled"] is False
