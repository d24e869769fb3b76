"""Scheduled flag changes: switch on or off, or set a rollout's coverage, at a given minute; run by the
every-minute runner (driven here with a fixed clock); cancellable; approved when created in an
environment that requires approval."""

import datetime as dt

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from features.governance import signals
from features.governance.models import ScheduledChange
from features.governance.services import (
    scheduled_change_cancel,
    scheduled_change_create,
    scheduled_changes_apply,
)
from features.models import Environment, FeatureEnvironment
from features.services import feature_create, feature_environments_as_dict, feature_update
from features.tasks import scheduled_changes_run

pytestmark = pytest.mark.django_db

LAUNCH = dt.datetime(2099, 5, 1, 9, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
ROLLOUT = {"type": "rollout", "condition": {}, "value": True, "coverage": 0.1}


@pytest.fixture
def flag(db):
    return feature_create(
        user=None,
        key="launch",
        name="Launch",
        environments={
            "staging": {"enabled": False, "rules": [{"type": "force", "value": True}, ROLLOUT]},
            "production": {"enabled": False, "rules": [ROLLOUT]},
        },
    )


def env(key: str) -> Environment:
    return Environment.objects.get(key=key)


def served(flag, environment: str) -> dict:
    return feature_environments_as_dict(flag)[environment]


def test_switch_on__fires_at_its_minute_not_before(flag, author):
    # run_at 09:00:40 is kept to the minute: it runs at the 09:00 run.
    change = scheduled_change_create(
        feature=flag,
        environment=env("staging"),
        action="switch_on",
        run_at=LAUNCH + dt.timedelta(seconds=40),
        user=author,
    )
    assert change.run_at == LAUNCH
    assert scheduled_changes_apply(now=LAUNCH - MINUTE) == []
    assert served(flag, "staging")["enabled"] is False
    fired = scheduled_changes_apply(now=LAUNCH)
    assert [c.pk for c in fired] == [change.pk]
    assert served(flag, "staging")["enabled"] is True
    change.refresh_from_db()
    assert (change.status, change.fired_at) == ("done", LAUNCH)
    assert scheduled_changes_apply(now=LAUNCH + MINUTE) == []  # ran once


def test_switch_off__rules_kept(flag, author):
    feature_update(feature=flag, user=None, environments={"staging": {"enabled": True}})
    scheduled_change_create(
        feature=flag, environment=env("staging"), action="switch_off", run_at=LAUNCH, user=author
    )
    scheduled_changes_apply(now=LAUNCH)
    assert served(flag, "staging") == {
        "enabled": False,
        "rules": [{"type": "force", "condition": {}, "value": True}, ROLLOUT],
    }


def test_set_coverage__only_that_rule_changes(flag, author):
    scheduled_change_create(
        feature=flag,
        environment=env("staging"),
        action="set_coverage",
        rule_position=2,
        coverage=0.5,
        run_at=LAUNCH,
        user=author,
    )
    scheduled_changes_apply(now=LAUNCH)
    rules = served(flag, "staging")["rules"]
    assert rules[1]["coverage"] == 0.5 and rules[0] == {"type": "force", "condition": {}, "value": True}
    assert served(flag, "production")["rules"] == [ROLLOUT]


def test_fired__history_row_names_the_scheduled_change(flag, author):
    change = scheduled_change_create(
        feature=flag, environment=env("staging"), action="switch_on", run_at=LAUNCH, user=author
    )
    scheduled_changes_apply(now=LAUNCH)
    record = FeatureEnvironment.history.filter(environment__key="staging").latest("history_date")
    assert record.enabled is True
    assert record.history_change_reason == f"scheduled change #{change.pk}"


def test_cancelled__never_fires(flag, author):
    change = scheduled_change_create(
        feature=flag, environment=env("staging"), action="switch_on", run_at=LAUNCH, user=author
    )
    scheduled_change_cancel(scheduled_change=change, user=author)
    assert scheduled_changes_apply(now=LAUNCH) == []
    assert served(flag, "staging")["enabled"] is False
    change.refresh_from_db()
    assert (change.status, change.cancelled_by) == ("cancelled", author)


def test_rule_gone_meanwhile__failed_with_reason_nothing_changed(flag, author):
    change = scheduled_change_create(
        feature=flag,
        environment=env("staging"),
        action="set_coverage",
        rule_position=2,
        coverage=0.5,
        run_at=LAUNCH,
        user=author,
    )
    feature_update(feature=flag, user=None, environments={"staging": {"rules": [ROLLOUT]}})
    scheduled_changes_apply(now=LAUNCH)
    change.refresh_from_db()
    assert change.status == "failed"
    assert "no longer a rollout rule" in change.result
    assert served(flag, "staging")["rules"] == [ROLLOUT]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "switch_on", "run_at": dt.datetime(2000, 1, 1, tzinfo=dt.UTC)}, "run_at"),
        ({"action": "set_coverage", "rule_position": 1, "coverage": 0.5}, "rule_position"),  # a force rule
        ({"action": "set_coverage", "rule_position": 9, "coverage": 0.5}, "rule_position"),
        ({"action": "set_coverage", "rule_position": 2, "coverage": 1.5}, "coverage"),
        ({"action": "switch_on", "coverage": 0.5}, "action"),
    ],
    ids=["past", "not-rollout", "no-such-rule", "coverage-over-1", "coverage-on-switch"],
)
def test_create__invalid__names_the_field(flag, author, fields, field):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        scheduled_change_create(
            feature=flag, environment=env("staging"), user=author, **{"run_at": LAUNCH, **fields}
        )
    assert field in error.value.message_dict


def test_task__runs_what_is_due_and_is_scheduled_every_minute(flag, author):
    past = scheduled_change_create(
        feature=flag, environment=env("staging"), action="switch_on", run_at=LAUNCH, user=author
    )
    ScheduledChange.objects.filter(pk=past.pk).update(run_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert scheduled_changes_run.delay().get() == {"done": [past.pk], "failed": []}
    task = PeriodicTask.objects.get(task="features.tasks.scheduled_changes_run")
    assert (task.enabled, task.interval.every, task.interval.period) == (True, 1, "minutes")


def test_fired__signal_sent_on_commit(flag, author, django_capture_on_commit_callbacks):
    received = []

    def receiver(sender, instance, **kwargs):
        received.append((instance.pk, instance.status))

    signals.scheduled_change_fired.connect(receiver, dispatch_uid="test-fired")
    try:
        change = scheduled_change_create(
            feature=flag, environment=env("staging"), action="switch_on", run_at=LAUNCH, user=author
        )
        with django_capture_on_commit_callbacks(execute=True):
            scheduled_changes_apply(now=LAUNCH)
    finally:
        signals.scheduled_change_fired.disconnect(dispatch_uid="test-fired")
    assert received == [(change.pk, "done")]


# --- the API -------------------------------------------------------------------------------------------


def test_api__create_list_cancel(flag, author_client):
    url = reverse("scheduledchange-list")
    response = author_client.post(
        url,
        {
            "feature": "launch",
            "environment": "staging",
            "action": "set_coverage",
            "rule_position": 2,
            "coverage": 0.5,
            "run_at": "2099-05-01T09:00:30Z",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["run_at"], body["description"]) == (
        "pending",
        "2099-05-01T09:00:00+00:00",
        "Set rule 2 of launch in staging to 50%",
    )
    assert author_client.get(url, {"feature__key": "launch", "status": "pending"}).json()["count"] == 1
    cancel = reverse("scheduledchange-cancel", args=[body["id"]])
    assert author_client.post(cancel).json()["status"] == "cancelled"
    assert author_client.post(cancel).status_code == 409


def test_api__invalid__400_names_field(flag, author_client):
    response = author_client.post(
        reverse("scheduledchange-list"),
        {
            "feature": "launch",
            "environment": "staging",
            "action": "switch_on",
            "run_at": "2001-01-01T00:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "run_at" in response.json()


def test_api__without_permission__403(flag, user, api_client):
    api_client.force_authenticate(user)
    response = api_client.post(
        reverse("scheduledchange-list"),
        {
            "feature": "launch",
            "environment": "staging",
            "action": "switch_on",
            "run_at": "2099-01-01T00:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 403


def test_api__protected_environment__approved_when_created_then_fires(
    production, flag, author_client, reviewer_client
):
    response = author_client.post(
        reverse("scheduledchange-list"),
        {
            "feature": "launch",
            "environment": "production",
            "action": "switch_on",
            "run_at": "2099-05-01T09:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    assert response.json()["operation"] == "schedule.create"
    assert not ScheduledChange.objects.exists()
    pk = response.json()["id"]
    assert author_client.post(reverse("changerequest-approve", args=[pk])).status_code == 403
    assert reviewer_client.post(reverse("changerequest-approve", args=[pk])).status_code == 200
    change = ScheduledChange.objects.get()
    assert (change.change_request_id, change.created_by.username) == (pk, "alice")
    scheduled_changes_apply(now=LAUNCH)  # no second approval when it fires
    assert served(flag, "production")["enabled"] is True
