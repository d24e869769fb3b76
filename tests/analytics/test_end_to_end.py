"""End to end: events and exposures through the SDK API, ``manage.py rollup``, ``GET .../results/``,
checked against statistics computed directly from the generated data with numpy and scipy."""

import datetime as dt
import io
import math
import uuid

import numpy as np
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient
from scipy import stats as scipy_stats

from experiments.models import Experiment, ExperimentStatus, MetricRole
from features.models import Environment
from features.services import sdk_key_create
from metrics.models import MetricType
from tests.factories import ExperimentFactory, ExperimentMetricFactory, MetricFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def post_in_batches(client, url: str, field: str, items: list[dict]) -> None:
    for start in range(0, len(items), 1000):  # the API takes at most 1000 items a request
        response = client.post(url, {field: items[start : start + 1000]}, format="json")
        assert response.status_code == 202, response.json()
        assert response.json()["rejected"] == []


def welch_relative(
    a: np.ndarray, b: np.ndarray, alpha: float = 0.05
) -> tuple[float, tuple[float, float], float]:
    """Relative lift of b over a, its delta-method CI with Welch's degrees of freedom, and its p-value."""
    va, vb, na, nb = a.var(ddof=1), b.var(ddof=1), a.size, b.size
    lift = b.mean() / a.mean() - 1
    se = math.sqrt(vb / (nb * a.mean() ** 2) + b.mean() ** 2 * va / (na * a.mean() ** 4))
    dof = (va / na + vb / nb) ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    half = scipy_stats.t.ppf(1 - alpha / 2, dof) * se
    return lift, (lift - half, lift + half), 2 * scipy_stats.t.sf(abs(lift) / se, dof)


def test_end_to_end__sdk_api_then_rollup_command__results_match_scipy(clickhouse, pm_client):
    # Given a running experiment with revenue (primary), orders (secondary) and errors (guardrail)
    experiment = ExperimentFactory(key="checkout", variants=["control", "treatment"],
                                   status=ExperimentStatus.RUNNING, correction="holm")  # fmt: skip
    # ... created before its three days of traffic (exposures dated before that would be refused)
    Experiment.objects.filter(pk=experiment.pk).update(created_at=timezone.now() - dt.timedelta(days=4))
    for key, metric_type, event, role, lower in [
        ("revenue", MetricType.SUM, "purchase", MetricRole.PRIMARY, False),
        ("orders", MetricType.COUNT, "purchase", MetricRole.SECONDARY, False),
        ("errors", MetricType.COUNT, "error", MetricRole.GUARDRAIL, True),
    ]:
        metric = MetricFactory(key=key, type=metric_type, event=event, higher_is_better=not lower)
        ExperimentMetricFactory(experiment=experiment, metric=metric, role=role)
    # ... and traffic with a known effect: treatment buys 30% more, errors 60% more
    rng = np.random.default_rng(2024)
    now = timezone.now()
    units = {"control": [f"c{i}" for i in range(400)], "treatment": [f"t{i}" for i in range(400)]}
    exposures, events = [], []
    revenue = {v: [] for v in units}
    orders = {v: [] for v in units}
    errors = {v: [] for v in units}
    for variant, ids in units.items():
        for unit in ids:
            t0 = now - dt.timedelta(days=3) + dt.timedelta(minutes=int(rng.integers(0, 600)))
            exposures.append({"experiment": "checkout", "variant": variant, "unit_id": unit,
                              "timestamp": t0.isoformat()})  # fmt: skip
            n_orders = int(rng.poisson(1.3 if variant == "treatment" else 1.0))
            values = np.round(rng.gamma(2.0, 15.0, n_orders), 2)
            n_errors = int(rng.poisson(0.8 if variant == "treatment" else 0.5))
            for value in values:
                at = t0 + dt.timedelta(minutes=int(rng.integers(0, 2 * 24 * 60)))
                events.append({"event_id": str(uuid.uuid4()), "name": "purchase", "unit_id": unit,
                               "value": float(value), "timestamp": at.isoformat()})  # fmt: skip
            for _ in range(n_errors):
                at = t0 + dt.timedelta(minutes=int(rng.integers(0, 2 * 24 * 60)))
                events.append({"name": "error", "unit_id": unit, "timestamp": at.isoformat()})
            # events before the first exposure are not the metric's
            events.append({"name": "purchase", "unit_id": unit, "value": 999.0,
                           "timestamp": (t0 - dt.timedelta(hours=1)).isoformat()})  # fmt: skip
            revenue[variant].append(float(values.sum()))
            orders[variant].append(n_orders)
            errors[variant].append(n_errors)
    _, sdk_key = sdk_key_create(environment=Environment.objects.get(key="production"))
    sdk = APIClient()
    sdk.credentials(HTTP_AUTHORIZATION=f"Bearer {sdk_key}")
    post_in_batches(sdk, reverse("exposures"), "exposures", exposures)
    post_in_batches(sdk, reverse("events"), "events", events)

    # When
    out = io.StringIO()
    call_command("rollup", stdout=out)
    body = pm_client.get(reverse("experiment-results", kwargs={"key": "checkout"})).json()

    # Then
    assert "[1/1] checkout" in out.getvalue()
    assert body["srm"]["units"] == {"control": 400, "treatment": 400}
    assert body["srm"]["p_value"] == pytest.approx(1.0) and body["srm"]["ok"] is True
    metrics = {m["metric"]: m for m in body["metrics"]}
    for key, values in (("revenue", revenue), ("orders", orders), ("errors", errors)):
        a, b = np.asarray(values["control"], float), np.asarray(values["treatment"], float)
        block = metrics[key]
        assert [(v["variant"], v["units"]) for v in block["variants"]] == [
            ("control", 400),
            ("treatment", 400),
        ]
        assert block["variants"][0]["mean"] == pytest.approx(a.mean(), rel=1e-12)
        assert block["variants"][1]["mean"] == pytest.approx(b.mean(), rel=1e-12)
        [comparison] = block["comparisons"]
        welch = scipy_stats.ttest_ind(b, a, equal_var=False)
        interval = welch.confidence_interval(0.95)
        assert comparison["absolute"]["estimate"] == pytest.approx(b.mean() - a.mean(), rel=1e-9)
        assert comparison["absolute"]["ci"] == pytest.approx([interval.low, interval.high], rel=1e-9)
        lift, ci, p_value = welch_relative(a, b)
        assert comparison["relative"]["estimate"] == pytest.approx(lift, rel=1e-9)
        assert comparison["relative"]["ci"] == pytest.approx(list(ci), rel=1e-9)
        assert comparison["p_value"] == pytest.approx(p_value, rel=1e-6)
        metrics[key]["expected_p"] = p_value
    # Holm over the primary and secondary comparisons; the guardrail keeps its p-value and is flagged
    p_revenue, p_orders = metrics["revenue"]["expected_p"], metrics["orders"]["expected_p"]
    smaller, larger = sorted([p_revenue, p_orders])
    holm = {smaller: min(1, 2 * smaller), larger: max(min(1, 2 * smaller), min(1, larger))}
    assert metrics["revenue"]["comparisons"][0]["p_value_adjusted"] == pytest.approx(
        holm[p_revenue], rel=1e-6
    )
    assert metrics["orders"]["comparisons"][0]["p_value_adjusted"] == pytest.approx(holm[p_orders], rel=1e-6)
    guardrail = metrics["errors"]["comparisons"][0]
    assert guardrail["p_value_adjusted"] == guardrail["p_value"] < 0.05
    assert guardrail["guardrail_violated"] is True and guardrail["direction"] == "regressed"
    assert {w["code"] for w in body["warnings"]} == {"guardrail_violated"}
    # the primary metric's time series ends on today's cumulative numbers
    [series] = body["timeseries"]
    assert series["metric"] == "revenue"
    assert series["points"][-1]["date"] == timezone.now().date().isoformat()
    assert series["points"][-1]["variants"] == metrics["revenue"]["variants"]
    assert body["refresh"]["status"] == "ok" and body["refresh"]["refreshed_by"] == "command"
