"""Change requests over the API: a write to an approval-protected flag answers 202 and applies
nothing; another user with the permission approves (which applies it) or rejects; never its author;
never over a newer change (409)."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from features.governance.models import ChangeRequest
from features.models import FeatureEnvironment, FeatureRule
from features.services import feature_create, feature_environments_as_dict, feature_update
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ROLLOUT = {"type": "rollout", "condition": {}, "value": True, "coverage": 0.2}


def feature_url(key: str) -> str:
    return reverse("feature-detail", args=[key])


def approve_url(pk: int) -> str:
    return reverse("changerequest-approve", args=[pk])


def reject_url(pk: int) -> str:
    return reverse("changerequest-reject", args=[pk])


@pytest.fixture
def flag(author):
    return feature_create(
        user=author,
        key="dark_mode",
        name="Dark mode",
        environments={"production": {"enabled": True, "rules": [ROLLOUT]}, "staging": {"enabled": False}},
    )


def served(flag) -> dict:
    return feature_environments_as_dict(flag)


def test_patch__protected_environment__202_change_request_nothing_applied(production, flag, author_client):
    before = served(flag)
    response = author_client.patch(
        feature_url("dark_mode"),
        {"environments": {"production": {"rules": [{**ROLLOUT, "coverage": 0.5}]}}},
        format="json",
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["code"] == "approval_required"
    assert body["status"] == "open" and body["operation"] == "feature.update"
    assert body["environments"] == ["production"]
    assert body["target"] == {"type": "feature", "key": "dark_mode"}
    assert body["diff"] == [
        {
            "path": "environments.production.rules[1]",
            "before": ROLLOUT,
            "after": {**ROLLOUT, "coverage": 0.5},
        }
    ]
    assert response["Location"] == reverse("changerequest-detail", args=[body["id"]])
    assert served(flag) == before
    assert ChangeRequest.objects.get().created_by.username == "alice"


def test_patch__unprotected_environment__applied_at_once(production, flag, author_client):
    response = author_client.patch(
        feature_url("dark_mode"), {"environments": {"staging": {"enabled": True}}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert served(flag)["staging"]["enabled"] is True
    assert not ChangeRequest.objects.exists()


def test_patch__name_only__applied_at_once(production, flag, author_client):
    response = author_client.patch(feature_url("dark_mode"), {"name": "Dark theme"}, format="json")
    assert response.status_code == 200
    assert not ChangeRequest.objects.exists()


def test_patch__default_value__served_everywhere__needs_approval(production, flag, author_client):
    response = author_client.patch(feature_url("dark_mode"), {"default_value": True}, format="json")
    assert response.status_code == 202
    assert response.json()["diff"] == [{"path": "default_value", "before": False, "after": True}]


def test_patch__no_environment_requires_approval__applied(flag, author_client):
    response = author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    )
    assert response.status_code == 200
    assert served(flag)["production"]["enabled"] is False


def test_patch__invalid__400_and_no_change_request(production, flag, author_client):
    response = author_client.patch(
        feature_url("dark_mode"),
        {"environments": {"production": {"rules": [{**ROLLOUT, "coverage": 2}]}}},
        format="json",
    )
    assert response.status_code == 400
    assert "coverage" in str(response.json())
    assert not ChangeRequest.objects.exists()


def test_approve__by_reviewer__applied_and_recorded(production, flag, author_client, reviewer_client):
    pk = author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    ).json()["id"]
    response = reviewer_client.post(approve_url(pk), {"comment": "ok"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["reviewed_by"], body["review_comment"]) == ("applied", "bob", "ok")
    assert body["applied_at"] is not None
    assert served(flag)["production"] == {"enabled": False, "rules": [ROLLOUT]}
    # In the history: the switch's row names the change request and who approved it.
    record = FeatureEnvironment.history.filter(environment__key="production").latest("history_date")
    assert record.enabled is False
    assert record.history_change_reason == f"change request #{pk} approved by bob"
    assert record.history_user.username == "bob"
    statuses = list(
        ChangeRequest.history.filter(id=pk).order_by("history_date").values_list("status", flat=True)
    )
    assert statuses == ["open", "applied"]


def test_approve__by_author__403_nothing_applied(production, flag, author_client):
    pk = author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    ).json()["id"]
    response = author_client.post(approve_url(pk), {}, format="json")
    assert response.status_code == 403
    assert "someone else" in response.json()["detail"]
    assert served(flag)["production"]["enabled"] is True
    assert ChangeRequest.objects.get(pk=pk).status == "open"


def test_approve__superuser_author__still_403(production, flag, superuser):
    from tests.governance.conftest import client_for

    client = client_for(superuser)
    pk = client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    ).json()["id"]
    assert client.post(approve_url(pk), {}, format="json").status_code == 403


def test_approve__without_permission__403(production, flag, author_client):
    pk = author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    ).json()["id"]
    from tests.governance.conftest import client_for

    outsider = UserFactory(username="carol")
    outsider.user_permissions.add(Permission.objects.get(codename="change_feature"))
    response = client_for(outsider).post(approve_url(pk), {}, format="json")
    assert response.status_code == 403
    assert served(flag)["production"]["enabled"] is True


def test_approve__over_a_newer_change__409_nothing_applied(
    production, flag, author, author_client, reviewer_client
):
    pk = author_client.patch(
        feature_url("dark_mode"),
        {"environments": {"production": {"rules": [{**ROLLOUT, "coverage": 0.5}]}}},
        format="json",
    ).json()["id"]
    # Meanwhile an operator (outside the API's approvals) changes the same rules.
    feature_update(
        feature=flag, user=None, environments={"production": {"rules": [{**ROLLOUT, "coverage": 0.3}]}}
    )
    assert reviewer_client.get(reverse("changerequest-detail", args=[pk])).json()["outdated"] is True
    response = reviewer_client.post(approve_url(pk), {}, format="json")
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "stale_change_request"
    assert FeatureRule.objects.get(feature=flag, environment__key="production").coverage == 0.3
    assert ChangeRequest.objects.get(pk=pk).status == "open"


def test_approve__unrelated_change_meanwhile__still_applies(production, flag, author_client, reviewer_client):
    pk = author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    ).json()["id"]
    author_client.patch(
        feature_url("dark_mode"), {"environments": {"staging": {"enabled": True}}}, format="json"
    )
    assert reviewer_client.post(approve_url(pk), {}, format="json").status_code == 200
    assert served(flag)["staging"]["enabled"] is True  # kept, not reverted
    assert served(flag)["production"]["enabled"] is False


def test_approve__twice__409(production, flag, author_client, reviewer_client):
    pk = author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    ).json()["id"]
    assert reviewer_client.post(approve_url(pk), {}, format="json").status_code == 200
    response = reviewer_client.post(approve_url(pk), {}, format="json")
    assert response.status_code == 409
    assert "already" in response.json()["detail"]


def test_reject__by_reviewer__nothing_applied(production, flag, author_client, reviewer_client):
    pk = author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    ).json()["id"]
    response = reviewer_client.post(reject_url(pk), {"comment": "not now"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert served(flag)["production"]["enabled"] is True
    assert reviewer_client.post(approve_url(pk), {}, format="json").status_code == 409


def test_reject__by_author__withdraws(production, flag, author_client):
    pk = author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    ).json()["id"]
    assert author_client.post(reject_url(pk), {}, format="json").status_code == 200


def test_reject__other_user_without_permission__403(production, flag, author_client):
    from tests.governance.conftest import client_for

    pk = author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    ).json()["id"]
    assert (
        client_for(UserFactory(username="carol")).post(reject_url(pk), {}, format="json").status_code == 403
    )


def test_list__filters_and_anonymous(production, flag, author_client, api_client):
    author_client.patch(
        feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
    )
    assert api_client.get(reverse("changerequest-list")).status_code == 401
    listed = author_client.get(reverse("changerequest-list"), {"status": "open", "environment": "production"})
    assert [item["target"]["key"] for item in listed.json()["results"]] == ["dark_mode"]
    assert author_client.get(reverse("changerequest-list"), {"environment": "staging"}).json()["count"] == 0


def test_create__on_in_protected_environment__202_then_created_on_approval(
    production, author_client, reviewer_client
):
    response = author_client.post(
        reverse("feature-list"),
        {
            "key": "banner",
            "name": "Banner",
            "default_value": False,
            "environments": {"production": {"enabled": True, "rules": []}},
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    assert author_client.get(feature_url("banner")).status_code == 404
    pk = response.json()["id"]
    assert reviewer_client.post(approve_url(pk), {}, format="json").status_code == 200
    got = author_client.get(feature_url("banner")).json()
    assert got["environments"]["production"]["enabled"] is True
    assert got["owner"] == "alice"


def test_create__off_in_protected_environment__201(production, author_client):
    response = author_client.post(
        reverse("feature-list"),
        {
            "key": "banner",
            "name": "Banner",
            "default_value": False,
            "environments": {"staging": {"enabled": True}},
        },
        format="json",
    )
    assert response.status_code == 201


def test_environment_api__requires_approval_field(production, superuser):
    from tests.governance.conftest import client_for

    client = client_for(superuser)
    assert client.get(reverse("environment-detail", args=["production"])).json()["requires_approval"] is True
    response = client.patch(
        reverse("environment-detail", args=["staging"]), {"requires_approval": True}, format="json"
    )
    assert response.status_code == 200 and response.json()["requires_approval"] is True


def test_signals__opened_approved_applied_rejected__on_commit(
    production, flag, author_client, reviewer_client, django_capture_on_commit_callbacks
):
    from features.governance import signals

    received = []
    names = [
        "change_request_opened",
        "change_request_approved",
        "change_request_applied",
        "change_request_rejected",
    ]
    for name in names:
        getattr(signals, name).connect(
            lambda sender, instance, name=name, **kwargs: received.append(
                (name, instance.pk, instance.status)
            ),
            dispatch_uid=f"test-{name}",
            weak=False,
        )
    try:
        with django_capture_on_commit_callbacks(execute=True):
            first = author_client.patch(
                feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
            ).json()["id"]
            second = author_client.patch(
                feature_url("dark_mode"), {"default_value": True}, format="json"
            ).json()["id"]
            reviewer_client.post(approve_url(first), {}, format="json")
            reviewer_client.post(reject_url(second), {}, format="json")
    finally:
        for name in names:
            getattr(signals, name).disconnect(dispatch_uid=f"test-{name}")
    assert received == [
        ("change_request_opened", first, "open"),
        ("change_request_opened", second, "open"),
        ("change_request_approved", first, "applied"),
        ("change_request_applied", first, "applied"),
        ("change_request_rejected", second, "rejected"),
    ]


def test_held_write__on_commit_work_of_the_dry_run__discarded(
    production, flag, author_client, django_capture_on_commit_callbacks
):
    # The dry run saved rows (whose receivers schedule work on commit, e.g. cache invalidation and
    # webhooks); rolled back, none of that work may run: only the change request's "opened".
    from features.governance import signals

    with django_capture_on_commit_callbacks() as callbacks:
        author_client.patch(
            feature_url("dark_mode"), {"environments": {"production": {"enabled": False}}}, format="json"
        )
    assert len(callbacks) == 1
    assert callbacks[0].__qualname__.startswith(signals.send_on_commit.__qualname__)


def test_delete__on_in_protected_environment__202_then_deleted_on_approval(
    production, flag, author_client, reviewer_client
):
    response = author_client.delete(feature_url("dark_mode"))
    assert response.status_code == 202, response.content
    assert response.json()["operation"] == "feature.delete"
    assert author_client.get(feature_url("dark_mode")).status_code == 200
    assert reviewer_client.post(approve_url(response.json()["id"]), {}, format="json").status_code == 200
    assert author_client.get(feature_url("dark_mode")).status_code == 404


def test_delete__off_everywhere_protected__204(production, author_client):
    feature_create(user=None, key="old", name="Old", environments={"staging": {"enabled": True}})
    assert author_client.delete(feature_url("old")).status_code == 204


def test_delete__changed_since__409(production, flag, author_client, reviewer_client):
    pk = author_client.delete(feature_url("dark_mode")).json()["id"]
    feature_update(feature=flag, user=None, environments={"production": {"enabled": False}})
    assert reviewer_client.post(approve_url(pk), {}, format="json").status_code == 409
    assert author_client.get(feature_url("dark_mode")).status_code == 200


@pytest.mark.parametrize("name", ["changerequest-list", "scheduledchange-list"])
def test_sdk_key__403_on_governance_endpoints(api_client, name):
    from features.models import Environment
    from features.services import sdk_key_create

    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    response = api_client.get(reverse(name), HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403
