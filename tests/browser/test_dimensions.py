"""The results page's dimension picker, in a real browser: pick an attribute, read each level."""

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from analytics.results.services import experiment_results_refresh
from tests.analytics.test_results_dimensions import experiment_with_metrics, traffic
from tests.browser.conftest import admin_login, assert_plot_drawn, requires_chromium, screenshot

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "dims-password-1"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_results_page__dimension_picker__levels_warning_and_chart(clickhouse, browser_page):
    # Given a refreshed experiment whose exposures carry country and browser
    experiment = experiment_with_metrics("shop")
    traffic()
    experiment_results_refresh(experiment_id=experiment.pk)
    get_user_model().objects.create_superuser("pm", "pm@example.com", PASSWORD)
    page = browser_page
    admin_login(page, "pm", PASSWORD)
    page.goto(f"/admin/analytics/experimentresult/experiment/{experiment.pk}/results/")

    # The picker lists the entry day and the attributes seen; no breakdown yet
    options = page.locator("#dimension-picker option").all_inner_texts()
    assert options == ["— no breakdown —", "entry day (first exposure, UTC)", "browser", "country"]
    assert page.locator("h3.dimension-level").count() == 0

    # When a product manager picks country
    page.select_option("#dimension-picker", "country")
    page.wait_for_selector("h3.dimension-level")

    # Then each level, largest first, with its own split check, the warning and the lift per level
    levels = page.locator("h3.dimension-level").evaluate_all("els => els.map(e => e.dataset.level)")
    assert levels == ["de", "fr", "se", "__missing__"]
    assert "split does not match" in page.inner_text('h3.dimension-level[data-level="se"]')
    assert "Exploratory." in page.inner_text("#dimension-warning")
    assert "?dimension=country" in page.url
    assert page.locator("table.dimension-numbers").count() == 4
    assert_plot_drawn(page, "#dimension-plot-container")
    page.evaluate("document.querySelector('#dimensions').scrollIntoView()")
    screenshot(page, "results-dimension", full_page=False)

    # And the entry day too
    page.select_option("#dimension-picker", "entry_day")
    page.wait_for_url("**dimension=entry_day")
    assert page.locator("h3.dimension-level").count() == 1
