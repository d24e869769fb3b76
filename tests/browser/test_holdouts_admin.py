"""The holdouts' admin page in the browser: a product manager creates a holdout of a flag and an
experiment, starts it from the list, finds its settings locked and its results link; its internal
experiment's page names the holdout and offers no lifecycle buttons."""

import pytest

from experiments.models import Experiment
from experiments.services import experiment_start
from features.holdouts.models import Holdout, HoldoutStatus
from features.services import feature_create
from tests.browser.conftest import admin_login, requires_chromium, screenshot
from tests.factories import ExperimentFactory, MetricFactory, ProductManagerFactory

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "holdout-pm-1"


def _choose(page, field: str, pk: int) -> None:
    """Move the option of ``pk`` to the chosen side of a filtered two-list selector."""
    page.select_option(f"#id_{field}_from", value=str(pk))
    page.click(f"#id_{field}_add")


def test_admin_holdout__create_start_locked_and_internal_experiment_owned(browser_page):
    # Given a flag, a running experiment, a metric and a product manager
    ProductManagerFactory(username="carol", password=PASSWORD)
    flag = feature_create(
        user=None, key="new_checkout", name="New checkout", type="boolean", default_value=False
    )
    experiment = experiment_start(
        experiment=ExperimentFactory(key="checkout_button", name="Green button"), user=None
    )
    metric = MetricFactory(key="purchase_rate", name="Purchase rate")
    page = browser_page
    admin_login(page, "carol", PASSWORD)

    # When she creates a 10% holdout of the flag and the experiment, measured by the purchase rate
    page.goto("/admin/features/holdout/add/")
    page.fill("#id_name", "Checkout holdout")
    page.fill("#id_key", "checkout_holdout")
    page.fill("#id_percentage", "10")
    _choose(page, "held_out_flags", flag.pk)
    _choose(page, "held_out_experiments", experiment.pk)
    _choose(page, "metrics", metric.pk)
    page.click("input[name=_save]")
    assert "was added successfully" in page.locator(".messagelist").inner_text()
    holdout = Holdout.objects.get(key="checkout_holdout")
    assert holdout.status == HoldoutStatus.DRAFT and holdout.percentage == 10.0
    assert list(holdout.features.values_list("key", flat=True)) == ["new_checkout"]
    assert list(holdout.experiments.values_list("key", flat=True)) == ["checkout_button"]

    # ... and starts it from the list
    page.check(f"#result_list input[name=_selected_action][value='{holdout.pk}']")
    page.select_option("select[name=action]", "start_selected")
    page.click("button[name=index]")
    assert "Holdout checkout_holdout: started." in page.locator(".messagelist").inner_text()

    # Then its page shows it running, who is held out locked, and its results link
    page.goto(f"/admin/features/holdout/{holdout.pk}/change/")
    assert page.locator("#id_percentage").is_disabled()
    assert page.locator("#id_name").is_enabled()
    assert "Results: held out vs. general population" in page.inner_text("#content")
    screenshot(page, "holdout-admin", full_page=False, docs=False)

    # ... and its internal experiment's page names the holdout, with no lifecycle buttons
    internal = Experiment.objects.get(key="holdout-checkout_holdout")
    page.goto(f"/admin/experiments/experiment/{internal.pk}/change/")
    note = page.locator(".managed-note").inner_text()
    assert note == "This experiment belongs to holdout checkout_holdout; stop the holdout instead."
    assert page.locator("button.lifecycle-pause").count() == 0
    assert page.locator("a.lifecycle-stop").count() == 0
