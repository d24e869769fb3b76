"""Approvals in the browser: a product manager's save of a production flag opens a change request;
a colleague sees its diff and approves it, which applies it. Screenshot: the change request page."""

import datetime as dt

import pytest

from features.governance.models import ChangeRequest
from features.governance.services import scheduled_change_create
from features.models import Environment, Feature
from features.services import feature_create
from tests.browser.conftest import admin_login, requires_chromium, screenshot
from tests.factories import ProductManagerFactory

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "gov-pass-1"


def test_admin_approvals__save_held_then_colleague_approves__applied(browser_page):
    # Given production requires approval, a flag rolled out to 20% there, and two product managers
    Environment.objects.filter(key="production").update(requires_approval=True)
    ProductManagerFactory(username="alice", password=PASSWORD)
    ProductManagerFactory(username="bob", password=PASSWORD)
    flag = feature_create(
        user=None,
        key="new_checkout",
        name="New checkout",
        environments={
            "production": {
                "enabled": True,
                "rules": [{"type": "rollout", "condition": {}, "value": True, "coverage": 0.2}],
            }
        },
    )
    page = browser_page
    # When Alice changes the default value and saves
    admin_login(page, "alice", PASSWORD)
    page.goto(f"/admin/features/feature/{flag.pk}/change/")
    page.fill("#id_default_value", "true")
    page.click("input[name=_save]")
    # Then the page says the change waits, and nothing changed
    message = page.locator(".messagelist .warning").first
    assert "requires approval" in message.inner_text()
    assert Feature.objects.get(pk=flag.pk).default_value is False
    # The flag's page lists what waits: the change request and a scheduled change, with "Cancel"
    scheduled_change_create(
        feature=flag,
        environment=Environment.objects.get(key="staging"),
        action="switch_on",
        run_at=dt.datetime(2099, 1, 1, 9, tzinfo=dt.UTC),
        user=None,
    )
    page.goto(f"/admin/features/feature/{flag.pk}/change/")
    panel = page.locator("#flag-governance").inner_text()
    assert "Change flag “new_checkout” in production" in panel
    assert "Switch new_checkout in staging on" in panel and "Cancel" in panel
    screenshot(page, "flag-waiting-changes", full_page=False, docs=False)
    page.click("#open-change-requests a")
    assert "Approve and apply" not in page.content()  # not for her own change
    page.context.clear_cookies()
    # When Bob opens the change request, reads the diff and approves it
    admin_login(page, "bob", PASSWORD)
    change_request = ChangeRequest.objects.get()
    page.goto(f"/admin/features/changerequest/{change_request.pk}/change/")
    diff = page.locator("#change-request-diff").inner_text()
    assert "default_value" in diff and "false" in diff and "true" in diff
    page.fill("#review_comment", "Checked with the team.")
    screenshot(page, "change-request", full_page=False)
    page.click("#approve-button")
    # Then it is applied, and the flag's history names the change request
    assert "approved and applied" in page.locator(".messagelist .success").inner_text()
    assert Feature.objects.get(pk=flag.pk).default_value is True
    page.goto(f"/admin/features/feature/{flag.pk}/history/")
    assert f"change request #{change_request.pk} approved by bob" in page.content()
