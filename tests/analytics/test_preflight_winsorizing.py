"""The pre-flight baseline of a winsorized metric (cap_percentile) uses the values the analysis will:
each user's value capped at the pooled percentile over the baseline users, checked with numpy on the
same per-user values, computed here from the events written."""

import datetime as dt

import numpy as np
import pytest
from django.core.cache import cache
from django.utils import timezone

from analytics.admin.preflight import baseline_text, metric_baseline
from analytics.ingestion.services import events_write, exposures_write
from tests.factories import MetricFactory

pytestmark = [pytest.mark.django_db, pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)]

USERS = 600


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def _heavy_tailed_revenue(now: dt.datetime) -> tuple[np.ndarray, np.ndarray]:
    """600 production users exposed 10 days ago; a third buy nothing, the others 1 to 3 purchases of
    Pareto-distributed value (a few whales) within a day; one purchase outside the 48-hour window.
    Returns each user's revenue and purchase count within the window, in user order."""
    rng = np.random.default_rng(7)
    revenue, purchases = np.zeros(USERS), np.zeros(USERS)
    exposures, events = [], []
    for i in range(USERS):
        t0 = now - dt.timedelta(days=10) + dt.timedelta(minutes=i)
        exposures.append({"experiment": "any", "variant": "control", "unit_id": f"u{i}", "timestamp": t0,
                          "environment": "production"})  # fmt: skip
        if i % 3 == 0:
            continue
        for k in range(1 + i % 3):
            value = float(np.round((rng.pareto(1.3) + 1) * 20, 2))
            events.append({"name": "purchase", "unit_id": f"u{i}", "value": value,
                           "timestamp": t0 + dt.timedelta(hours=1 + k), "environment": "production"})  # fmt: skip
            revenue[i] += value
            purchases[i] += 1
        events.append({"name": "purchase", "unit_id": f"u{i}", "value": 5000.0,
                       "timestamp": t0 + dt.timedelta(days=3), "environment": "production"})  # fmt: skip
    exposures_write(rows=exposures)
    events_write(rows=events)
    return revenue, purchases


def test_baseline__winsorized_sum__mean_and_variance_of_the_capped_values(clickhouse):
    now = timezone.now()
    revenue, _ = _heavy_tailed_revenue(now)
    metric = MetricFactory(type="sum", event="purchase", window_hours=48, cap_percentile=0.99)
    raw = MetricFactory(type="sum", event="purchase", window_hours=48)

    baseline = metric_baseline(metric=metric, until=now)
    uncapped = metric_baseline(metric=raw, until=now)

    cap = np.quantile(revenue, 0.99)  # numpy's default: linear interpolation between closest ranks
    capped = np.minimum(revenue, cap)
    assert baseline.units == USERS
    assert baseline.percentile_cap == pytest.approx(cap, rel=1e-9)
    assert baseline.mean == pytest.approx(capped.mean(), rel=1e-9)
    assert baseline.variance == pytest.approx(capped.var(ddof=1), rel=1e-9)
    # The tail matters here: the uncapped variance is far larger (and is what the pre-flight used before).
    assert uncapped.variance == pytest.approx(revenue.var(ddof=1), rel=1e-9)
    assert uncapped.percentile_cap is None
    assert uncapped.variance > 2 * baseline.variance
    assert "winsorized at the 99th percentile of these users" in baseline_text(metric, baseline)


def test_baseline__winsorized_ignoring_zeros__percentile_of_the_buyers_only(clickhouse):
    now = timezone.now()
    revenue, _ = _heavy_tailed_revenue(now)
    metric = MetricFactory(
        type="sum", event="purchase", window_hours=48, cap_percentile=0.9, cap_ignore_zeros=True
    )

    baseline = metric_baseline(metric=metric, until=now)

    cap = np.quantile(revenue[revenue != 0], 0.9)
    capped = np.minimum(revenue, cap)  # the zeros still count, as zeros
    assert baseline.percentile_cap == pytest.approx(cap, rel=1e-9)
    assert baseline.mean == pytest.approx(capped.mean(), rel=1e-9)
    assert baseline.variance == pytest.approx(capped.var(ddof=1), rel=1e-9)


def test_baseline__ratio_with_winsorized_denominator__denominator_capped_numerator_not(clickhouse):
    now = timezone.now()
    revenue, purchases = _heavy_tailed_revenue(now)
    orders = MetricFactory(type="count", event="purchase", window_hours=48, cap_percentile=0.5)
    # The ratio's own percentile is not applied to its numerator (as in the analysis).
    aov = MetricFactory(type="ratio", event="purchase", window_hours=48, denominator=orders)

    baseline = metric_baseline(metric=aov, until=now)

    d = np.minimum(purchases, np.quantile(purchases, 0.5))
    ratio = revenue.mean() / d.mean()
    covariance = np.cov(revenue, d, ddof=1)
    variance = (covariance[0, 0] - 2 * ratio * covariance[0, 1] + ratio**2 * covariance[1, 1]) / d.mean() ** 2
    assert baseline.percentile_cap == pytest.approx(np.quantile(purchases, 0.5), rel=1e-9)
    assert baseline.mean == pytest.approx(ratio, rel=1e-9)
    assert baseline.variance == pytest.approx(variance, rel=1e-9)
