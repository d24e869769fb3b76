"""The pre-flight check before starting an experiment: checks, power estimate, "Start now"."""

import datetime as dt
import math
import re

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from analytics.clickhouse import ClickHouseUnavailable
from analytics.ingestion.services import events_write, exposures_write
from analytics.stats import days_needed
from experiments.models import ExperimentStatus, MetricRole
from tests.factories import ExperimentFactory, ExperimentMetricFactory, MetricFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()  # baselines are cached for a few minutes
    yield
    cache.clear()


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _preflight_url(experiment) -> str:
    return reverse("admin:analytics_experiment_preflight", args=[experiment.pk])


def _experiment_with_primary(**fields):
    experiment = ExperimentFactory(hypothesis="Green sells more", **fields)
    metric = MetricFactory(key="purchase_rate", name="Purchase rate", event="purchase")
    ExperimentMetricFactory(experiment=experiment, metric=metric, role=MetricRole.PRIMARY)
    return experiment


def _days_shown(page: str) -> int:
    return int(re.search(r"About <strong>([\d,]+) days?</strong>", page).group(1).replace(",", ""))


def test_change_page__draft__start_button_links_to_the_preflight_page(admin_client):
    experiment = ExperimentFactory()
    page = admin_client.get(
        reverse("admin:experiments_experiment_change", args=[experiment.pk])
    ).content.decode()
    assert f'<a href="{_preflight_url(experiment)}" class="lifecycle-start">Start…</a>' in page
    assert "results-link" not in page  # nothing to read before it starts


def test_change_page__running__results_button(admin_client):
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    page = admin_client.get(
        reverse("admin:experiments_experiment_change", args=[experiment.pk])
    ).content.decode()
    assert reverse("admin:analytics_experiment_results", args=[experiment.pk]) in page


def test_preflight_page__no_metrics__error_and_no_estimate(admin_client):
    experiment = ExperimentFactory(traffic_allocation=0.5)
    page = admin_client.get(_preflight_url(experiment)).content.decode()
    assert "No metrics attached" in page
    assert "Split: Control 50.0% · Treatment 50.0%" in page
    assert "50% of all users take part" in page
    assert "Attach a primary metric" in page
    assert 'id="start-now"' in page


def test_preflight_page__secondary_only__warns_no_primary(admin_client):
    experiment = ExperimentFactory()
    ExperimentMetricFactory(experiment=experiment, role=MetricRole.SECONDARY)
    page = admin_client.get(_preflight_url(experiment)).content.decode()
    assert "No primary metric" in page


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_preflight_page__recent_data__baseline_and_days_needed(clickhouse, admin_client):
    # Given 1,400 users seen over the last 14 days, 140 of whom bought: 10%, 100 a day
    experiment = _experiment_with_primary(minimum_detectable_effect=0.2)
    now = timezone.now()
    exposures_write(rows=[{"experiment": "other", "variant": "a", "unit_id": f"u{i}", "environment": "production",
                           "timestamp": now - dt.timedelta(hours=2 + i % 300)} for i in range(1400)])  # fmt: skip
    events_write(rows=[{"name": "purchase", "unit_id": f"u{i}", "timestamp": now - dt.timedelta(hours=1 + i % 300),
                        "environment": "production"} for i in range(0, 1400, 10)])  # fmt: skip
    events_write(rows=[{"name": "purchase", "unit_id": "old", "timestamp": now - dt.timedelta(days=20),
                        "environment": "production"}])  # fmt: skip

    # When
    page = admin_client.get(_preflight_url(experiment)).content.decode()

    # Then: the same days as the power formula on that baseline
    assert "Baseline from the last 14 days of events: 10.0% purchase rate, over 1,400 users seen" in page
    expected = days_needed(relative_lift=0.2, mean=0.1, daily_units=100.0, weights=[1.0, 1.0])
    assert _days_shown(page) == math.ceil(expected)
    assert "to detect a 20.0% lift in purchase rate with 80% power (95% confidence" in page


def test_preflight_page__typed_baseline__estimate_from_the_form(admin_client, monkeypatch):
    import analytics.admin as analytics_admin

    monkeypatch.setattr(analytics_admin, "metric_baseline", lambda **kwargs: pytest.fail("no data needed"))
    experiment = _experiment_with_primary(minimum_detectable_effect=0.05, traffic_allocation=0.5)
    page = admin_client.get(_preflight_url(experiment), {"baseline_mean": "0.04", "daily_units": "2000"})
    page = page.content.decode()
    expected = days_needed(relative_lift=0.05, mean=0.04, daily_units=1000.0, weights=[1.0, 1.0])
    assert _days_shown(page) == math.ceil(expected)
    assert "Baseline you typed: 4.0% purchase rate, 2,000 users a day." in page


def test_preflight_page__typed_rate_out_of_range__form_explains(admin_client, monkeypatch):
    experiment = _experiment_with_primary()
    page = admin_client.get(_preflight_url(experiment), {"baseline_mean": "12", "daily_units": "2000"})
    assert "A conversion rate is between 0 and 1" in page.content.decode()


def test_preflight_page__clickhouse_unreachable__asks_for_a_baseline(admin_client, monkeypatch):
    import analytics.admin as analytics_admin

    def unreachable(**kwargs):
        raise ClickHouseUnavailable("connection refused")

    monkeypatch.setattr(analytics_admin, "metric_baseline", unreachable)
    page = admin_client.get(_preflight_url(_experiment_with_primary())).content.decode()
    assert "Could not read recent data (connection refused); type a baseline below." in page
    assert 'id="baseline-form"' in page


def test_preflight_start_now__draft__running_and_back_to_its_page(admin_client):
    experiment = _experiment_with_primary()
    response = admin_client.post(_preflight_url(experiment), follow=True)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING and experiment.started_at is not None
    assert response.redirect_chain[-1][0] == reverse(
        "admin:experiments_experiment_change", args=[experiment.pk]
    )
    assert "is running" in response.content.decode()


def test_preflight_start_now__already_running__refused_with_reason(admin_client):
    experiment = ExperimentFactory(status=ExperimentStatus.RUNNING)
    response = admin_client.post(_preflight_url(experiment), follow=True)
    page = response.content.decode()
    assert "Could not start" in page and "running" in page
    assert "already: the" in page  # the page says it is for information
    assert 'id="start-now"' not in page


def test_preflight_start_now__viewer_only__refused_and_still_draft(client):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_experiment"))
    client.force_login(user)
    experiment = ExperimentFactory()
    page = client.get(_preflight_url(experiment)).content.decode()
    assert 'id="start-now"' not in page
    client.post(_preflight_url(experiment))
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.DRAFT


# --- the baseline, computed as the analysis computes the metric ----------------------------------------------
def _window_story(now):
    """1,000 production users exposed 13 days ago, a few minutes apart, half in each variant: every 10th
    buys a day later (inside a 168-hour window), every 20th (offset 5) only 10 days later (outside it),
    and every 10th (offset 3) bought the day before its exposure (a pre-period, as in the demo).
    Testers from a development key buy every time. 10% convert within the window after exposure; 25%
    bought within the 14 days."""
    exposures, events = [], []
    for i in range(1000):
        t0 = now - dt.timedelta(days=13) + dt.timedelta(minutes=i)
        variant = "control" if (i // 10) % 2 == 0 else "treatment"
        exposures.append({"experiment": "running_one", "variant": variant, "unit_id": f"u{i}", "timestamp": t0,
                          "environment": "production"})  # fmt: skip
        if i % 10 == 0:
            events.append({"name": "purchase", "unit_id": f"u{i}", "value": 50.0 + i % 7,
                           "timestamp": t0 + dt.timedelta(days=1), "environment": "production"})  # fmt: skip
        if i % 20 == 5:
            events.append({"name": "purchase", "unit_id": f"u{i}", "value": 80.0,
                           "timestamp": t0 + dt.timedelta(days=10), "environment": "production"})  # fmt: skip
        if i % 10 == 3:
            events.append({"name": "purchase", "unit_id": f"u{i}", "value": 30.0,
                           "timestamp": t0 - dt.timedelta(days=1), "environment": "production"})  # fmt: skip
    for i in range(300):
        t0 = now - dt.timedelta(days=5)
        exposures.append({"experiment": "running_one", "variant": "control", "unit_id": f"qa{i}", "timestamp": t0,
                          "environment": "development"})  # fmt: skip
        events.append({"name": "purchase", "unit_id": f"qa{i}", "value": 1.0,
                       "timestamp": t0 + dt.timedelta(hours=1), "environment": "development"})  # fmt: skip
    exposures_write(rows=exposures)
    events_write(rows=events)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_preflight_baseline__conversion_window__the_rate_the_running_experiment_measures(
    clickhouse, admin_client
):
    # Given a purchase rate with a 168-hour window, and an experiment already running on the same users
    from analytics.results.services import experiment_results_refresh

    now = timezone.now()
    _window_story(now)
    metric = MetricFactory(key="purchase_rate", name="Purchase rate", event="purchase", window_hours=168)
    running = ExperimentFactory(key="running_one", status=ExperimentStatus.RUNNING,
                                started_at=now - dt.timedelta(days=14))  # fmt: skip
    ExperimentMetricFactory(experiment=running, metric=metric, role=MetricRole.PRIMARY)
    planned = ExperimentFactory(hypothesis="Green sells more", minimum_detectable_effect=0.2)
    ExperimentMetricFactory(experiment=planned, metric=metric, role=MetricRole.PRIMARY)

    # When
    page = admin_client.get(_preflight_url(planned)).content.decode()
    measured = experiment_results_refresh(experiment_id=running.pk).payload["metrics"][0]["variants"]

    # Then the pre-flight's 10% is what the running experiment measures on those users (not 15%)
    assert [(v["units"], v["mean"]) for v in measured] == [(500, 0.1), (500, 0.1)]
    assert "Baseline from the last 14 days of events: 10.0% purchase rate, over 1,000 users seen" in page
    assert "in production; each user counts the 168 hours after their first exposure (or first event)" in page
    expected = days_needed(relative_lift=0.2, mean=0.1, daily_units=1000 / 14, weights=[1.0, 1.0])
    assert _days_shown(page) == math.ceil(expected)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_preflight_baseline__ratio_metric__ratio_of_totals_and_delta_method_variance(
    clickhouse, admin_client
):
    # Given average order value: revenue in 168 hours (capped at 55 per user) over orders, no window
    import numpy as np

    from analytics.admin.preflight import metric_baseline

    now = timezone.now()
    _window_story(now)
    orders = MetricFactory(key="orders", name="Orders", type="count", event="purchase")
    aov = MetricFactory(key="aov", name="Average order value", type="ratio", event="purchase",
                        window_hours=168, cap_value=55.0, denominator=orders)  # fmt: skip
    planned = ExperimentFactory(hypothesis="Bigger baskets", minimum_detectable_effect=0.1)
    ExperimentMetricFactory(experiment=planned, metric=aov, role=MetricRole.PRIMARY)

    # When
    baseline = metric_baseline(metric=aov, until=now)
    page = admin_client.get(_preflight_url(planned)).content.decode()

    # Then, against a unit-by-unit computation: m = min(55, value bought within a week), d = orders
    m = np.array([min(55.0, 50.0 + i % 7) if i % 10 == 0 else 0.0 for i in range(1000)])
    d = np.array([float(i % 10 == 0) + float(i % 20 == 5) for i in range(1000)])
    ratio = m.mean() / d.mean()
    covariance = np.cov(m, d, ddof=1)
    variance = (covariance[0, 0] - 2 * ratio * covariance[0, 1] + ratio**2 * covariance[1, 1]) / d.mean() ** 2
    assert baseline.mean == pytest.approx(ratio, rel=1e-12)
    assert baseline.variance == pytest.approx(variance, rel=1e-9)
    assert baseline.units == 1000 and baseline.environments == ("production",)
    assert "(a ratio of totals), over 1,000 users seen" in page
    assert "delta-method variance" in page
    expected = days_needed(
        relative_lift=0.1, mean=ratio, variance=variance, daily_units=1000 / 14, weights=[1, 1]
    )
    assert _days_shown(page) == math.ceil(expected)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_preflight_baseline__analysed_environments__only_their_users(clickhouse, admin_client):
    from analytics.admin.preflight import metric_baseline

    now = timezone.now()
    _window_story(now)
    metric = MetricFactory(key="purchase_rate", event="purchase", window_hours=168)

    production = metric_baseline(metric=metric, until=now)
    development = metric_baseline(metric=metric, until=now, environments=["development"])

    assert (production.units, production.mean) == (1000, 0.1)
    assert (development.units, development.mean) == (300, 1.0)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_preflight_page__no_recent_data_or_no_denominator__says_why_and_asks_for_a_baseline(
    clickhouse, admin_client
):
    experiment = _experiment_with_primary()
    page = admin_client.get(_preflight_url(experiment)).content.decode()
    assert "Nobody was seen in the last 14 days (production), so there is no baseline to read." in page
    assert 'id="baseline-form"' in page

    # A ratio whose denominator nobody did
    now = timezone.now()
    exposures_write(rows=[{"experiment": "x", "variant": "a", "unit_id": f"u{i}", "timestamp": now - dt.timedelta(days=1),
                           "environment": "production"} for i in range(10)])  # fmt: skip
    orders = MetricFactory(key="orders", name="Orders", type="count", event="order")
    aov = MetricFactory(key="aov", type="ratio", event="purchase", denominator=orders)
    ratio_experiment = ExperimentFactory()
    ExperimentMetricFactory(experiment=ratio_experiment, metric=aov, role=MetricRole.PRIMARY)
    page = admin_client.get(_preflight_url(ratio_experiment)).content.decode()
    assert (
        "No user had any orders (the denominator) in the last 14 days (production): the ratio has no value"
        in page
    )
