"""The product managers' tour, in a real browser: create an experiment, pre-flight and start it, send
traffic, refresh and read its results; then the demo workspace's list, results and a flag's "try it".

The screenshots are the README's "Tour for product managers" (docs/screenshots/).
"""

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from analytics.ingestion.services import events_write, exposures_write
from experiments.bucketing import assign_variant
from experiments.models import Experiment, ExperimentStatus
from features.sdk import cache as sdk_cache
from metrics.models import Metric
from tests.browser.conftest import admin_login, assert_plot_drawn, requires_chromium, screenshot

pytestmark = [
    requires_chromium,
    # The live server reads the database from another thread, so writes must be committed;
    # serialized_rollback restores the rows the migrations made (environments, groups) afterwards.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "tour-password-1"
DEMO_UNITS = 50_000  # half the real demo, to keep the tour short; its stories hold at this size


@pytest.fixture(autouse=True)
def _fresh_caches():
    cache.clear()  # results documents and flag configurations are cached by id
    sdk_cache.memo_clear()
    yield
    cache.clear()
    sdk_cache.memo_clear()


def _traffic(key: str, *, units: int, rates: dict[str, float]) -> None:
    """Exposures over the last 3 days and purchases at known rates, through the write path."""
    now = timezone.now()
    variants = list(rates)
    exposures, events = [], []
    for index in range(units):
        variant = variants[index % len(variants)]
        t0 = now - dt.timedelta(days=3) + dt.timedelta(minutes=index * (3 * 24 * 60 - 10) // units)
        exposures.append({"experiment": key, "variant": variant, "unit_id": f"tour-{index}", "timestamp": t0,
                          "environment": "production"})  # fmt: skip
        if (index // len(variants)) % 100 < rates[variant] * 100:
            events.append({"name": "purchase", "unit_id": f"tour-{index}", "value": 40.0,
                           "timestamp": t0 + dt.timedelta(minutes=5), "environment": "production"})  # fmt: skip
    exposures_write(rows=exposures)
    events_write(rows=events)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_admin_tour__create_preflight_start_refresh__results_page_draws_charts(clickhouse, browser_page):
    page = browser_page
    get_user_model().objects.create_superuser("pm", "pm@example.com", PASSWORD)
    Metric.objects.create(key="purchase_rate", name="Purchase rate", type="binomial", event="purchase")
    admin_login(page, "pm", PASSWORD)

    # Create an experiment through the admin form: two variants and a primary metric
    page.goto("/admin/experiments/experiment/add/")
    page.fill("#id_name", "Bigger search box")
    page.fill("#id_key", "search_box")
    page.fill("#id_hypothesis", "A bigger search box leads to more purchases.")
    for index, (key, name) in enumerate([("control", "Small box"), ("treatment", "Big box")]):
        page.fill(f"#id_variants-{index}-position", str(index))
        page.fill(f"#id_variants-{index}-key", key)
        page.fill(f"#id_variants-{index}-name", name)
    page.locator("#id_metric_links-0-metric + .select2").click()
    page.locator(".select2-search__field").fill("purchase")
    page.locator(".select2-results__option", has_text="Purchase rate").click()
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    experiment = Experiment.objects.get(key="search_box")
    assert [v.key for v in experiment.variants.all()] == ["control", "treatment"]

    # Start goes through the pre-flight check; no data yet, so type a baseline
    page.click("a.lifecycle-start")
    page.wait_for_selector("#preflight-checks")
    assert "Primary: Purchase rate." in page.inner_text("#preflight-checks")
    page.fill("#id_baseline_mean", "0.1")
    page.fill("#id_daily_units", "6000")
    page.click("#estimate")
    assert "to detect a 5.0% lift in purchase rate" in page.inner_text("#power-answer")
    screenshot(page, "preflight")
    page.click("#start-now")
    page.wait_for_selector(".messagelist .success")
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING

    # Traffic arrives; refresh the results and read them
    _traffic("search_box", units=2000, rates={"control": 0.10, "treatment": 0.16})
    page.click("a.results-link")
    page.wait_for_selector("text=No results yet")
    page.click("#refresh-results")
    page.wait_for_selector(".messagelist .success")
    for container in ("#forest-container", ".timeseries-container", "#units-container"):
        assert_plot_drawn(page, container)
    summary = page.inner_text("#summary")
    assert "Big box raises purchase rate by 60.0%" in summary and "significant improvement" in summary
    assert "computed" in page.inner_text("#freshness")
    screenshot(page, "results-new-experiment", docs=False)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_admin_tour__demo_workspace__list_results_srm_and_flag_try_it(clickhouse, browser_page, monkeypatch):
    page = browser_page
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", PASSWORD)
    # pytest runs with debug off, where the demo refuses to run unless told
    call_command("demo", "--units", str(DEMO_UNITS), "--allow-production", stdout=io.StringIO())
    admin_login(page, "admin", PASSWORD)

    # The list: status, days running, users, the primary metric's lift, SRM flagged
    page.goto("/admin/experiments/experiment/")
    pricing_row = page.locator("#result_list tr", has_text="Pricing banner").inner_text()
    assert "SRM" in pricing_row and "Running" in pricing_row
    screenshot(page, "experiment-list", full_page=False)

    # The checkout button's results: every chart drawn, the sentence a PM reads
    checkout = Experiment.objects.get(key="checkout_button")
    page.goto(f"/admin/analytics/experimentresult/experiment/{checkout.pk}/results/")
    for container in ("#forest-container", ".timeseries-container", "#units-container"):
        assert_plot_drawn(page, container)
    assert "a significant improvement" in page.inner_text("#summary")
    screenshot(page, "results")

    # The pricing banner: the sample ratio mismatch comes first
    pricing = Experiment.objects.get(key="pricing_banner")
    page.goto(f"/admin/analytics/experimentresult/experiment/{pricing.pk}/results/")
    assert "Sample ratio mismatch." in page.inner_text("#results-warnings")
    assert "do not trust" in page.inner_text("#srm-check")
    screenshot(page, "results-srm", full_page=False)

    # ... and its p90 order value, a quantile metric, in the numbers table
    p90_row = page.locator("table.numbers tr", has_text="p90 order value")
    p90_row.scroll_into_view_if_needed()
    assert "quantile" in p90_row.inner_text()  # labelled: its mean column holds the variants' p90s
    screenshot(page, "results-quantile", full_page=False)

    # A flag's "try it" box: the checkout experiment decides this user's value
    variant = ["control", "treatment"][
        assign_variant(seed="checkout_button", unit_id="user-42", weights=[1.0, 1.0], traffic_allocation=1.0)
    ]
    page.goto("/admin/features/feature/")
    page.click("text=New checkout")
    page.select_option("#try_environment", "production")
    page.fill("#try_unit_id", "user-42")
    page.fill("#try_attributes", '{"plan": "pro", "country": "DE"}')
    page.click("#try-submit")
    page.wait_for_selector("#try-value")
    assert page.inner_text("#try-value") == ("true" if variant == "treatment" else "false")
    result = page.inner_text("#try-result")
    assert "SPLIT" in result and f"assigned this unit variant “{variant}”" in result
    screenshot(page, "flag-try-it", full_page=False)
