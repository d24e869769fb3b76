"""The admin fits a 1440 x 900 screen with the navigation sidebar open, for a superuser and a product
manager: every list shows its last column without a horizontal scroll bar, and no change form is wider
than the page. Measured in Chromium on a workspace with long names and keys, results and rules.

(Found at 1440 px: the experiment list's table was 842 px in a 791 px box and hid the results links,
the feature list cut "Updated at", and a flag's or a draft experiment's form was ~1,600 px wide.)
"""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from analytics.ingestion.services import events_write, exposures_write
from analytics.results.services import experiment_results_refresh
from experiments.models import Experiment
from experiments.services import experiment_create, experiment_start
from features.models import Environment, Feature, SdkKey
from features.sdk import cache as sdk_cache
from features.services import feature_create, sdk_key_create
from metrics.services import metric_create
from tests.browser.conftest import TIMEOUT_MS, admin_login, requires_chromium, screenshot
from tests.factories import ProductManagerFactory

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCREEN = {"width": 1440, "height": 900}
PASSWORD = "layout-pass-1"
LONG_KEY = "homepage_hero_redesign_with_personalised_recommendations_v2"

# Measured in the page: the page's own horizontal overflow, each list's table against its box and the
# screen, each change form against its box and the screen.
MEASURE = """() => {
  const root = document.documentElement;
  const box = (selector) => {
    const element = document.querySelector(selector);
    if (!element) { return null; }
    const rect = element.getBoundingClientRect();
    return {right: rect.right, scrollWidth: element.scrollWidth, clientWidth: element.clientWidth};
  };
  const lastHeader = document.querySelector('#result_list thead th:last-child');
  return {
    screen: root.clientWidth,
    page: root.scrollWidth,
    results: box('#changelist .results'),
    lastHeaderRight: lastHeader ? lastHeader.getBoundingClientRect().right : null,
    form: box('#content-main form'),
  };
}"""


@pytest.fixture(autouse=True)
def _fresh_caches():
    cache.clear()
    sdk_cache.memo_clear()
    yield
    cache.clear()
    sdk_cache.memo_clear()


def _workspace(admin) -> dict[str, int]:
    """Metrics, a running experiment with results and a long-keyed one, a draft, flags with rules,
    an active and a revoked SDK key: what makes columns and forms wide."""
    purchase = metric_create(user=admin, key="purchase_rate", name="Purchase rate", event="purchase")
    metric_create(
        user=admin,
        key="revenue_per_user_including_refunds",
        name="Revenue per user, refunds included",
        type="sum",
        event="purchase",
        cap_value=500,
    )
    variants = [{"key": "control", "name": "Blue button"}, {"key": "treatment", "name": "Green button"}]
    checkout = experiment_create(
        user=admin,
        key="checkout_button",
        name="Green checkout button",
        variants=variants,
        metrics=[{"metric": "purchase_rate", "role": "primary"}],
    )
    checkout = experiment_start(experiment=checkout, user=admin)
    hero = experiment_create(
        user=admin,
        key=LONG_KEY,
        name="Homepage hero redesign with personalised recommendations",
        variants=[{"key": "control"}, {"key": "personalised_recommendations_treatment"}],
        metrics=[{"metric": purchase, "role": "primary"}],
    )
    experiment_start(experiment=hero, user=admin)
    draft = experiment_create(
        user=admin,
        key="pricing_banner_draft",
        name="Pricing banner",
        variants=[{"key": "control"}, {"key": "banner", "payload": {"headline": "Save 20% this week"}}],
    )
    now = timezone.now()
    exposures, events = [], []
    for index in range(400):
        variant = variants[index % 2]["key"]
        unit = f"layout-{index}"
        exposures.append(
            {"experiment": "checkout_button", "variant": variant, "unit_id": unit, "timestamp": now}
        )
        if index % 5 == 0:
            events.append({"name": "purchase", "unit_id": unit, "value": 40.0, "timestamp": now})
    exposures_write(rows=exposures)
    events_write(rows=events)
    experiment_results_refresh(experiment_id=checkout.pk)

    environments = {
        key: {
            "enabled": True,
            "rules": [
                {"type": "force", "condition": {"email": {"$regex": "@example\\.com$"}}, "value": True},
                {"type": "rollout", "condition": {"country": {"$in": ["DE", "FR"]}}, "value": True, "coverage": 0.25},
                {"type": "experiment", "experiment": "checkout_button", "values": {"control": False, "treatment": True}},
            ],
        }
        for key in ("development", "staging", "production")
    }  # fmt: skip
    flag = feature_create(
        user=admin, key="new_checkout_flow_with_saved_cards", name="New checkout", environments=environments
    )
    feature_create(
        user=admin,
        key="pricing_configuration",
        name="Pricing configuration",
        type="json",
        default_value={"currency": "USD", "discount": 0.0, "banner": "Save 20% on your first order"},
    )
    production = Environment.objects.get(key="production")
    sdk_key_create(environment=production, name="web app", user=admin)
    revoked, _ = sdk_key_create(environment=production, name="old mobile app", user=admin)
    SdkKey.objects.filter(pk=revoked.pk).update(revoked=True)
    return {"running": checkout.pk, "draft": draft.pk, "flag": flag.pk, "metric": purchase.pk}


LISTS = [
    "/admin/experiments/experiment/",
    "/admin/metrics/metric/",
    "/admin/features/feature/",
    "/admin/features/environment/",
    "/admin/features/sdkkey/",
    "/admin/analytics/experimentresult/",
]


def _forms(ids: dict[str, int]) -> list[str]:
    return [
        "/admin/experiments/experiment/add/",
        f"/admin/experiments/experiment/{ids['running']}/change/",
        f"/admin/experiments/experiment/{ids['draft']}/change/",
        "/admin/metrics/metric/add/",
        f"/admin/metrics/metric/{ids['metric']}/change/",
        "/admin/features/feature/add/",
        f"/admin/features/feature/{ids['flag']}/change/",
    ]


def _overflows(page, path: str) -> list[str]:
    """What sticks out of a 1440 px screen on ``path`` (nothing, when the page fits)."""
    response = page.goto(path)
    assert response.status == 200, path
    page.wait_for_load_state("load")
    size: dict[str, Any] = page.evaluate(MEASURE)
    problems = []
    if size["page"] > size["screen"]:
        problems.append(f"{path}: the page is {size['page']} px wide on a {size['screen']} px screen")
    results = size["results"]
    if results and results["scrollWidth"] > results["clientWidth"]:
        problems.append(
            f"{path}: the list is {results['scrollWidth']} px in a {results['clientWidth']} px box"
        )
    if size["lastHeaderRight"] is not None and size["lastHeaderRight"] > size["screen"]:
        problems.append(f"{path}: the last column ends at {size['lastHeaderRight']:.0f} px")
    form = size["form"] if results is None else None
    if form and (form["scrollWidth"] > form["clientWidth"] or form["right"] > size["screen"]):
        problems.append(f"{path}: the form is {form['scrollWidth']} px in a {form['clientWidth']} px box")
    return problems


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_admin_layout__lists_and_change_forms_at_1440__fit_the_screen(clickhouse, chromium, live_server):
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)
    ProductManagerFactory(username="pm", password=PASSWORD)
    ids = _workspace(admin)
    assert Experiment.objects.get(pk=ids["running"]).result.payload  # the list has results to show
    assert Feature.objects.get(pk=ids["flag"]).rules.count() == 9

    problems = []
    for username in ("admin", "pm"):
        # The navigation sidebar is open, as a new user sees it (the tour's pages fold it)
        context = chromium.new_context(viewport=SCREEN, base_url=live_server.url, locale="en-US")
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        admin_login(page, username, PASSWORD)
        for path in LISTS + _forms(ids):
            problems += [f"{username} {problem}" for problem in _overflows(page, path)]
        page.goto("/admin/experiments/experiment/")
        assert page.locator("#nav-sidebar").is_visible()
        assert page.locator("#result_list a", has_text="results").first.is_visible()
        screenshot(page, f"layout-experiment-list-{username}", full_page=False, docs=False)
        page.goto(f"/admin/features/feature/{ids['flag']}/change/")
        screenshot(page, f"layout-flag-form-{username}", docs=False)
        context.close()

    assert problems == []
