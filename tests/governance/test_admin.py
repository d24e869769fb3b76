"""Approvals and scheduled changes in the admin: a save of a protected flag or experiment opens a change
request with a message instead of applying; the change request's page shows the diff and approves
(and applies) or rejects; the flag's page lists what waits and cancels schedules."""

import datetime as dt
from html.parser import HTMLParser

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from experiments.models import Experiment
from experiments.services import experiment_start
from features.governance.models import ChangeRequest, ScheduledChange
from features.models import Environment, Feature
from features.services import feature_create, feature_environments_as_dict
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

ROLLOUT = {"type": "rollout", "condition": {}, "value": True, "coverage": 0.2}


class _FormFields(HTMLParser):
    """The fields a browser would post from one form of a page: inputs, checked boxes, selected
    options and text areas (so the test does not depend on how the editor lays the form out)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.data = form_id, False, {}
        self._select = self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        if not self.inside or "disabled" in attrs:
            return
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file"):
            if attrs.get("type") in ("checkbox", "radio"):
                if "checked" in attrs:
                    self.data.setdefault(name, []).append(attrs.get("value", "on"))
            else:
                self.data[name] = attrs.get("value", "")
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, [] if "multiple" in attrs else "")
        elif tag == "option" and self._select and "selected" in attrs:
            if isinstance(self.data[self._select], list):
                self.data[self._select].append(attrs.get("value", ""))
            else:
                self.data[self._select] = attrs.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data.removeprefix("\n") if not self.data[self._textarea] else data


def form_data(client, url: str, form_id: str) -> dict:
    parser = _FormFields(form_id)
    parser.feed(client.get(url).content.decode())
    return parser.data


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def author_admin(client, author):
    client.force_login(author)
    return client


@pytest.fixture
def flag(author):
    return feature_create(
        user=author,
        key="dark_mode",
        name="Dark mode",
        environments={"production": {"enabled": True, "rules": [ROLLOUT]}},
    )


def feature_page(feature: Feature) -> str:
    return reverse("admin:features_feature_change", args=[feature.pk])


def test_flag_save__served_change__change_request_with_message_nothing_applied(
    production, flag, author_admin
):
    data = form_data(author_admin, feature_page(flag), "feature_form")
    data["default_value"] = "true"
    response = author_admin.post(feature_page(flag), data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    assert response["Location"] == feature_page(flag)
    change_request = ChangeRequest.objects.get()
    assert change_request.diff == [{"path": "default_value", "before": False, "after": True}]
    assert change_request.created_by.username == "alice"
    assert any(f"change request #{change_request.pk}" in text for text in messages_of(response))
    flag.refresh_from_db()
    assert flag.default_value is False
    assert flag.history.count() == 1  # only the creation: nothing of the held save is in the history


def test_flag_save__production_switch__held(production, flag, author_admin):
    data = form_data(author_admin, feature_page(flag), "feature_form")
    production_pk = str(Environment.objects.get(key="production").pk)
    switches = [
        name.removesuffix("-environment")
        for name, value in data.items()
        if name.startswith("environment_settings-")
        and name.endswith("-environment")
        and value == production_pk
    ]
    assert switches, "the flag page has a switch for production"
    data.pop(f"{switches[0]}-enabled", None)  # unticked
    assert author_admin.post(feature_page(flag), data).status_code == 302
    change_request = ChangeRequest.objects.get()
    assert change_request.environments == ["production"]
    assert {"path": "environments.production.enabled", "before": True, "after": False} in change_request.diff
    assert feature_environments_as_dict(flag)["production"]["enabled"] is True


def test_flag_save__name_only__applied(production, flag, author_admin):
    data = form_data(author_admin, feature_page(flag), "feature_form")
    data["name"] = "Dark theme"
    assert author_admin.post(feature_page(flag), data).status_code == 302
    flag.refresh_from_db()
    assert flag.name == "Dark theme"
    assert not ChangeRequest.objects.exists()


def test_change_request_page__diff_and_buttons_for_reviewer_only(
    production, flag, author_admin, reviewer, client
):
    data = form_data(author_admin, feature_page(flag), "feature_form")
    data["default_value"] = "true"
    author_admin.post(feature_page(flag), data)
    change_request = ChangeRequest.objects.get()
    url = reverse("admin:features_changerequest_change", args=[change_request.pk])
    page = author_admin.get(url).content.decode()
    assert 'id="change-request-diff"' in page and "default_value" in page
    assert 'id="approve-button"' not in page and "someone else" in page
    assert 'id="reject-button"' in page  # the author may withdraw
    client.force_login(reviewer)
    page = client.get(url).content.decode()
    assert 'id="approve-button"' in page
    # The list shows it, waiting.
    listing = client.get(reverse("admin:features_changerequest_changelist")).content.decode()
    assert "Change flag “dark_mode” in production" in listing


def test_change_request_admin__approve__applied(production, flag, author, reviewer, client):
    change_request = _held_default_value(flag, author)
    client.force_login(reviewer)
    response = client.post(
        reverse("admin:features_changerequest_review", args=[change_request.pk, "approve"]),
        {"comment": "fine"},
    )
    assert response.status_code == 302
    assert "approved and applied" in " ".join(messages_of(response))
    change_request.refresh_from_db()
    assert (change_request.status, change_request.reviewed_by, change_request.review_comment) == (
        "applied",
        reviewer,
        "fine",
    )
    flag.refresh_from_db()
    assert flag.default_value is True


def test_change_request_admin__author_approves__refused(production, flag, author, author_admin):
    change_request = _held_default_value(flag, author)
    response = author_admin.post(
        reverse("admin:features_changerequest_review", args=[change_request.pk, "approve"])
    )
    assert "someone else must approve it" in " ".join(messages_of(response))
    change_request.refresh_from_db()
    assert change_request.status == "open"


def test_change_request_admin__reject(production, flag, author, reviewer, client):
    change_request = _held_default_value(flag, author)
    client.force_login(reviewer)
    client.post(reverse("admin:features_changerequest_review", args=[change_request.pk, "reject"]))
    change_request.refresh_from_db()
    assert change_request.status == "rejected"
    flag.refresh_from_db()
    assert flag.default_value is False


def test_change_request_admin__outdated__shown_and_approval_refused(
    production, flag, author, reviewer, client
):
    from features.services import feature_update

    change_request = _held_default_value(flag, author)
    feature_update(feature=flag, user=None, default_value=True)  # the same change, made meanwhile
    client.force_login(reviewer)
    url = reverse("admin:features_changerequest_change", args=[change_request.pk])
    assert 'id="change-request-outdated"' in client.get(url).content.decode()
    response = client.post(
        reverse("admin:features_changerequest_review", args=[change_request.pk, "approve"])
    )
    assert "changed since change request" in " ".join(messages_of(response))
    change_request.refresh_from_db()
    assert change_request.status == "open"


def _held_default_value(flag, author) -> ChangeRequest:
    from config.exceptions import ApprovalRequired
    from features.governance.services import feature_write
    from features.services import feature_update

    with pytest.raises(ApprovalRequired):
        feature_write(
            feature=flag,
            user=author,
            run=lambda: feature_update(feature=flag, user=author, default_value=True),
        )
    return ChangeRequest.objects.get()


# --- experiments -------------------------------------------------------------------------------------


def test_experiment_lifecycle_button__start__held_with_message(production, author_admin):
    experiment = ExperimentFactory(key="exp")
    response = author_admin.post(
        reverse("admin:experiments_experiment_lifecycle", args=[experiment.pk, "start"])
    )
    assert response.status_code == 302
    assert "requires approval" in " ".join(messages_of(response))
    assert Experiment.objects.get(key="exp").status == "draft"
    assert ChangeRequest.objects.get().operation == "experiment.start"


def test_experiment_preflight_start_now__held(production, author_admin):
    experiment = ExperimentFactory(key="exp")
    response = author_admin.post(
        reverse("admin:analytics_experiment_preflight", args=[experiment.pk]), {"start": "1"}
    )
    assert response.status_code == 302
    assert Experiment.objects.get(key="exp").status == "draft"
    assert ChangeRequest.objects.get().operation == "experiment.start"


def test_experiment_stop_page__held_with_decision(production, author_admin):
    experiment = ExperimentFactory(key="exp")
    experiment_start(experiment=experiment, user=None)
    url = reverse("admin:experiments_experiment_lifecycle", args=[experiment.pk, "stop"])
    author_admin.post(url, {"decision_variant": "treatment", "reason": "won"})
    assert Experiment.objects.get(key="exp").status == "running"
    assert ChangeRequest.objects.get().params == {"decision_variant": "treatment", "reason": "won"}


def test_experiment_bulk_start__held(production, author_admin):
    ExperimentFactory(key="exp")
    response = author_admin.post(
        reverse("admin:experiments_experiment_changelist"),
        {"action": "bulk_start", "_selected_action": [Experiment.objects.get(key="exp").pk]},
    )
    assert response.status_code == 302
    assert Experiment.objects.get(key="exp").status == "draft"
    assert ChangeRequest.objects.count() == 1


def test_experiment_save__ramp_up__held_then_approved(production, author_admin, reviewer, client):
    experiment = ExperimentFactory(key="exp", traffic_allocation=0.2)
    experiment_start(experiment=experiment, user=None)
    url = reverse("admin:experiments_experiment_change", args=[experiment.pk])
    data = form_data(author_admin, url, "experiment_form")
    data["traffic_allocation"] = "0.5"
    response = author_admin.post(url, data)
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    assert Experiment.objects.get(key="exp").traffic_allocation == 0.2
    change_request = ChangeRequest.objects.get()
    assert change_request.params == {"traffic_allocation": 0.5}
    client.force_login(reviewer)
    client.post(reverse("admin:features_changerequest_review", args=[change_request.pk, "approve"]))
    assert Experiment.objects.get(key="exp").traffic_allocation == 0.5


# --- scheduled changes -------------------------------------------------------------------------------


def test_flag_page__lists_pending_schedules_and_cancels(flag, author, author_admin):
    from features.governance.services import scheduled_change_create

    change = scheduled_change_create(
        feature=flag,
        environment=Environment.objects.get(key="staging"),
        action="switch_on",
        run_at=dt.datetime(2099, 1, 1, 9, tzinfo=dt.UTC),
        user=author,
    )
    page = author_admin.get(feature_page(flag)).content.decode()
    assert "Switch dark_mode in staging on" in page and "2099-01-01 09:00" in page
    assert f"?feature={flag.pk}" in page  # "Schedule a change…"
    cancel = reverse("admin:features_scheduledchange_cancel", args=[change.pk])
    response = author_admin.post(cancel, {"next": feature_page(flag)})
    assert response["Location"] == feature_page(flag)
    change.refresh_from_db()
    assert change.status == "cancelled"
    assert "Nothing scheduled." in author_admin.get(feature_page(flag)).content.decode()


def test_schedule_add_page__creates(flag, author_admin):
    response = author_admin.post(
        reverse("admin:features_scheduledchange_add"),
        {
            "feature": flag.pk,
            "environment": Environment.objects.get(key="production").pk,
            "action": "set_coverage",
            "rule_position": "1",
            "coverage": "0.6",
            "run_at_0": "2099-01-01",
            "run_at_1": "09:00:00",
            "comment": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    change = ScheduledChange.objects.get()
    assert (change.coverage, change.rule_position, change.created_by.username) == (0.6, 1, "alice")


def test_schedule_add_page__invalid__error_on_the_field(flag, author_admin):
    response = author_admin.post(
        reverse("admin:features_scheduledchange_add"),
        {
            "feature": flag.pk,
            "environment": Environment.objects.get(key="production").pk,
            "action": "set_coverage",
            "rule_position": "3",
            "coverage": "0.6",
            "run_at_0": "2099-01-01",
            "run_at_1": "09:00:00",
        },
    )
    assert response.status_code == 200
    assert "rule_position" in response.context["adminform"].form.errors


def test_schedule_add_page__protected__held(production, flag, author_admin):
    response = author_admin.post(
        reverse("admin:features_scheduledchange_add"),
        {
            "feature": flag.pk,
            "environment": Environment.objects.get(key="production").pk,
            "action": "switch_off",
            "run_at_0": "2099-01-01",
            "run_at_1": "09:00:00",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == feature_page(flag)
    assert not ScheduledChange.objects.exists()
    assert ChangeRequest.objects.get().operation == "schedule.create"


def test_environment_admin__requires_approval_editable(superuser, client):
    client.force_login(superuser)
    production = Environment.objects.get(key="production")
    url = reverse("admin:features_environment_change", args=[production.pk])
    data = form_data(client, url, "environment_form")
    data["requires_approval"] = ["on"]
    assert client.post(url, data).status_code == 302
    production.refresh_from_db()
    assert production.requires_approval is True


def test_flag_delete_page__protected__held_with_message(production, flag, author_admin):
    from django.contrib.admin.models import LogEntry

    url = reverse("admin:features_feature_delete", args=[flag.pk])
    response = author_admin.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert response["Location"] == feature_page(flag)
    assert Feature.objects.filter(pk=flag.pk).exists()
    assert ChangeRequest.objects.get().operation == "feature.delete"
    assert not LogEntry.objects.filter(action_flag=3).exists()  # no "deleted" entry for what was not
    assert "requires approval" in " ".join(messages_of(response))


def test_flag_save__new_protected_environment_without_a_row__name_change_applied(flag, author_admin):
    # Given an environment made after the flag (the flag has no switch row there) that requires approval
    Environment.objects.create(key="eu_production", name="EU production", requires_approval=True)
    data = form_data(author_admin, feature_page(flag), "feature_form")
    data["name"] = "Dark theme"
    # When the flag's name is saved (the admin adds the missing, switched-off row as it saves)
    assert author_admin.post(feature_page(flag), data).status_code == 302
    # Then that is no change to what the environment serves: applied, no change request
    flag.refresh_from_db()
    assert flag.name == "Dark theme"
    assert not ChangeRequest.objects.exists()
