"""Calibration on the user's own data (analytics.calibration, ``manage.py calibrate``, the admin page)."""

import datetime as dt
import math
import random

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from scipy import stats as scipy_stats

from analytics import clickhouse
from analytics.calibration import (
    UNIT_ARMS_SQL,
    calibration_sums,
    calibration_verdict,
    false_positive_band,
    metric_calibrate,
    unit_values_params,
)
from analytics.ingestion.services import events_write, exposures_write
from analytics.models import MetricCalibration
from analytics.stats import minimum_detectable_effect
from metrics.models import MetricType
from tests.factories import MetricFactory

UNITS = 2000


def _story(now):
    """2,000 production units first seen over the last 10 days (exposed to some experiment); about 10%
    buy within a day of their exposure (inside a 48-hour window) and some buy 5 days later (outside it);
    revenue is an ordinary amount per purchase except for one whale (a million). 300 testers from a
    development key, buying every time, must not count. Returns, per unit, whether it converted within
    the window and its revenue within the window."""
    rng = random.Random(20261207)
    exposures, events, converted, revenue = [], [], {}, {}
    for i in range(UNITS):
        unit = f"u{i}"
        t0 = now - dt.timedelta(days=10) + dt.timedelta(minutes=6 * i)
        exposures.append({"experiment": "any", "variant": "a", "unit_id": unit, "timestamp": t0,
                          "environment": "production"})  # fmt: skip
        converted[unit], revenue[unit] = 0.0, 0.0
        if rng.random() < 0.1 or i == 1234:
            value = 1_000_000.0 if i == 1234 else round(rng.expovariate(1 / 40), 2)
            events.append({"name": "purchase", "unit_id": unit, "value": value,
                           "timestamp": t0 + dt.timedelta(hours=20), "environment": "production"})  # fmt: skip
            converted[unit], revenue[unit] = 1.0, value
        if rng.random() < 0.05:
            events.append({"name": "purchase", "unit_id": unit, "value": 5.0,
                           "timestamp": t0 + dt.timedelta(days=5), "environment": "production"})  # fmt: skip
    for i in range(300):
        t0 = now - dt.timedelta(days=3)
        exposures.append({"experiment": "any", "variant": "a", "unit_id": f"qa{i}", "timestamp": t0,
                          "environment": "development"})  # fmt: skip
        events.append({"name": "purchase", "unit_id": f"qa{i}", "value": 1.0,
                       "timestamp": t0 + dt.timedelta(hours=1), "environment": "development"})  # fmt: skip
    exposures_write(rows=exposures)
    events_write(rows=events)
    return converted, revenue


def _conversion(key="purchase_rate"):
    return MetricFactory(key=key, name="Purchase rate", type=MetricType.BINOMIAL, event="purchase",
                         window_hours=48)  # fmt: skip


def _revenue():
    return MetricFactory(
        key="revenue", name="Revenue", type=MetricType.SUM, event="purchase", window_hours=48
    )


def test_calibration_sums__every_seed__arms_partition_the_units_and_match_unit_by_unit(clickhouse, db):
    # Given the story and a revenue metric
    now = timezone.now()
    converted, revenue = _story(now)
    metric = _revenue()
    since = now - dt.timedelta(days=14)

    # When the one-pass statement splits them 50 times
    rows = calibration_sums(metric=metric, since=since, until=now, environments=["production"], seeds=50)

    # Then every seed's two arms hold all the production units and all their windowed revenue
    by_seed = {}
    for row in rows:
        by_seed.setdefault(row["seed"], {})[row["arm"]] = row
    assert sorted(by_seed) == list(range(50))
    expected_sum = math.fsum(revenue.values())
    expected_squares = math.fsum(v * v for v in revenue.values())
    for arms in by_seed.values():
        assert set(arms) == {0, 1}
        assert sum(arms[a]["units"] for a in arms) == UNITS
        assert math.isclose(sum(arms[a]["y_sum"] for a in arms), expected_sum, rel_tol=1e-9)
        assert math.isclose(sum(arms[a]["y_sum_squares"] for a in arms), expected_squares, rel_tol=1e-9)
    # ... the splits differ between seeds
    assert len({by_seed[s][0]["units"] for s in by_seed}) > 10
    # ... and for a few seeds, each arm is exactly the units the hash assigns to it
    params = unit_values_params(metric=metric, since=since, until=now, environments=["production"])
    checked = [0, 7, 49]
    assignment = clickhouse_query_arms(params, checked)
    for seed in checked:
        for arm in (0, 1):
            units = [u for (s, u), a in assignment.items() if s == seed and a == arm]
            assert by_seed[seed][arm]["units"] == len(units)
            assert math.isclose(
                by_seed[seed][arm]["y_sum"], math.fsum(revenue[u] for u in units), rel_tol=1e-9
            )
            assert math.isclose(
                by_seed[seed][arm]["y_sum_squares"], math.fsum(revenue[u] ** 2 for u in units), rel_tol=1e-9
            )


def clickhouse_query_arms(params, seeds):
    rows = clickhouse.query(UNIT_ARMS_SQL, {**params, "seed_list": seeds})
    return {(row["seed"], row["unit_id"]): row["arm"] for row in rows}


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_metric_calibrate__ratio__ratio_of_totals_and_engine_splits(clickhouse, db):
    # Given revenue per order (both within 48 hours of t0, revenue capped at 200 per user)
    now = timezone.now()
    _, revenue = _story(now)
    orders = MetricFactory(key="orders", type=MetricType.COUNT, event="purchase", window_hours=48)
    metric = MetricFactory(key="revenue_per_order", type=MetricType.RATIO, event="purchase", window_hours=48,
                           cap_value=200.0, denominator=orders)  # fmt: skip

    report = metric_calibrate(metric=metric, until=now, seeds=100)

    # Then every split is analysed and the baseline is the ratio of the totals
    assert report["error"] is None and report["splits"] == 100
    buyers = [value for value in revenue.values() if value > 0]
    expected = math.fsum(min(value, 200.0) for value in buyers) / len(buyers)
    assert math.isclose(report["mean"], expected, rel_tol=1e-9)
    assert report["mde"] is not None and report["mde"] > 0


@pytest.mark.parametrize(
    ("false_positives", "flagged", "words"),
    [(10, False, "5.0% false positives"), (0, True, "too few: heavy tails"), (40, True, "too many")],
)
def test_calibration_verdict__rate_inside_below_above_band__says_so(false_positives, flagged, words):
    low, high = false_positive_band(200, 0.05)
    report = {"error": None, "splits": 200, "alpha": 0.05, "false_positives": false_positives,
              "false_positive_rate": false_positives / 200, "band": [low / 200, high / 200],
              "flagged": flagged, "mde": 0.106, "duration_days": 14}  # fmt: skip
    assert not low <= false_positives <= high if flagged else low <= false_positives <= high
    text = calibration_verdict(report)
    assert words in text and "MDE 10.6% at 80% power in 14 days" in text
    assert ("CHECK THIS METRIC" in text) == flagged


def test_false_positive_band__binomial_quantiles():
    low, high = false_positive_band(200, 0.05)
    assert scipy_stats.binom.cdf(low - 1, 200, 0.05) <= 0.005 < scipy_stats.binom.cdf(low, 200, 0.05)
    assert scipy_stats.binom.sf(high, 200, 0.05) <= 0.005 < scipy_stats.binom.sf(high - 1, 200, 0.05)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_metric_calibrate__well_behaved_conversion__rate_within_band_and_mde_from_the_data(clickhouse, db):
    # Given the story: a conversion metric with nothing wrong in it
    now = timezone.now()
    converted, _ = _story(now)
    metric = _conversion()

    # When
    report = metric_calibrate(metric=metric, until=now, days=14, seeds=200, alpha=0.05)

    # Then about alpha of the placebo splits are significant, and the metric is not flagged
    assert report["error"] is None
    assert report["units"] == UNITS
    assert report["splits"] == 200
    low, high = false_positive_band(200, 0.05)
    assert low <= report["false_positives"] <= high
    assert not report["flagged"]
    assert 0.35 < report["mean_p_value"] < 0.65
    # ... and the MDE is the power formula's on the observed rate and traffic
    rate = math.fsum(converted.values()) / UNITS
    assert math.isclose(report["mean"], rate, rel_tol=1e-12)
    expected = minimum_detectable_effect(
        days=14, mean=rate, daily_units=UNITS / 14, alpha=0.05, target_power=0.8
    )
    assert math.isclose(report["mde"], expected, rel_tol=1e-12)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_metric_calibrate__one_whale__flagged_then_capped_fine(clickhouse, db):
    # Given revenue with one whale among ~200 ordinary buyers
    now = timezone.now()
    _story(now)

    # When calibrated without a cap, then with one
    whale = metric_calibrate(metric=_revenue(), until=now, seeds=200)
    capped = metric_calibrate(
        metric=MetricFactory(key="revenue_capped", type=MetricType.SUM, event="purchase", window_hours=48,
                             cap_value=200.0), until=now, seeds=200)  # fmt: skip

    # Then the whale's metric is flagged: the relative test calls a -100% lift whenever the whale lands
    # in the control arm (about half the splits), far above alpha
    assert whale["flagged"]
    assert whale["false_positive_rate"] > 0.3
    # ... and the capped one is fine
    assert not capped["flagged"], capped


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_metric_calibrate__quantile_or_no_data__report_says_why(clickhouse, db):
    now = timezone.now()
    quantile = MetricFactory(type=MetricType.QUANTILE, event="load", quantile=0.9, quantile_scope="unit")
    assert "quantile" in metric_calibrate(metric=quantile, until=now)["error"]
    assert "unit(s) seen" in metric_calibrate(metric=_conversion(), until=now)["error"]
    with pytest.raises(ValueError, match="seeds"):
        metric_calibrate(metric=_conversion(key="other_rate"), until=now, seeds=5)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_calibrate_command__healthy_and_whale__lines_and_exit_status(clickhouse, db, capsys):
    now = timezone.now()
    _story(now)
    _conversion()
    _revenue()

    # A healthy metric alone: success, one line, a stored report
    call_command("calibrate", "purchase_rate", "--seeds", "100")
    out = capsys.readouterr().out
    assert out.startswith("purchase_rate: ")
    assert "placebo splits at alpha 0.05" in out and "MDE" in out
    assert MetricCalibration.objects.get(metric__key="purchase_rate").ran_by == "command"

    # With the whale: its line says to check it, and the exit status is 2
    with pytest.raises(CommandError) as raised:
        call_command("calibrate", "--seeds", "100")
    assert raised.value.returncode == 2
    out = capsys.readouterr().out
    assert "revenue: " in out and "CHECK THIS METRIC, too many" in out

    # An unknown key: refused, naming it
    with pytest.raises(CommandError, match="No metric with key nope"):
        call_command("calibrate", "nope")
    with pytest.raises(CommandError, match="seeds"):
        call_command("calibrate", "purchase_rate", "--seeds", "3")


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_calibration_admin__button_runs_and_page_shows_the_report(clickhouse, admin_client):
    # Given the story and a conversion metric never calibrated
    _story(timezone.now())
    metric = _conversion()
    change_page = admin_client.get(reverse("admin:metrics_metric_change", args=[metric.pk])).content.decode()
    url = reverse("admin:analytics_metric_calibration", args=[metric.pk])
    assert url in change_page and "Calibrate on recent data" in change_page
    assert "has not been calibrated yet" in admin_client.get(url).content.decode()

    # When the button is pressed
    response = admin_client.post(url)

    # Then back on the page, with the stored report
    assert response.status_code == 302 and response.url == url
    calibration = MetricCalibration.objects.get(metric=metric)
    assert calibration.ran_by == "admin" and calibration.report["splits"] == 200
    page = admin_client.get(url).content.decode()
    assert "placebo splits at alpha 0.05" in page
    assert f"<td>{calibration.report['false_positives']}</td>" in page


def test_calibration_admin__viewer__sees_no_button_and_cannot_run(client, db):
    from django.contrib.auth.models import Permission

    from tests.factories import UserFactory

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_metric"))
    client.force_login(viewer)
    metric = _conversion()
    url = reverse("admin:analytics_metric_calibration", args=[metric.pk])
    assert "Calibrate now" not in client.get(url).content.decode()
    assert client.post(url).status_code == 403
    assert not MetricCalibration.objects.exists()
