"""A quantile metric from exposures and events to the results API and the admin results page."""

import datetime as dt
import uuid

import numpy as np
import pytest
from django.urls import reverse

from analytics.results.services import experiment_results_refresh
from analytics.stats import compare
from analytics.stats.quantile import quantile_clustered_stats_from_units, quantile_stats_from_values
from experiments.models import MetricRole
from tests.analytics.test_results import T0, running_experiment
from tests.analytics.test_rollup import Event, Exposure, write
from tests.factories import ExperimentMetricFactory, MetricFactory

pytestmark = pytest.mark.django_db


def test_quantile_metrics__refresh__results_api_reports_quantile_stats_and_comparisons(
    clickhouse, pm_client, admin_client
):
    # Given an experiment with a p90 revenue per unit and a p95 load time per event
    experiment = running_experiment(metrics=())
    p90 = MetricFactory(key="p90_revenue", type="quantile", event="buy", quantile=0.9, quantile_scope="unit")
    p95 = MetricFactory(key="p95_load", type="quantile", event="load", quantile=0.95, quantile_scope="event",
                        higher_is_better=False)  # fmt: skip
    ExperimentMetricFactory(experiment=experiment, metric=p90, role=MetricRole.PRIMARY)
    ExperimentMetricFactory(experiment=experiment, metric=p95, role=MetricRole.SECONDARY)
    rng = np.random.default_rng(5)
    exposures, events = [], []
    revenue = {"control": [], "treatment": []}
    loads = {"control": [], "treatment": []}
    for variant, scale in (("control", 1.0), ("treatment", 1.2)):
        for i in range(150):
            unit = f"{variant}-{i}"
            exposures.append(Exposure(unit, variant, T0, experiment="checkout"))
            spend = float(round(rng.lognormal(3, 1) * scale, 2)) if i % 2 else 0.0
            if spend:
                events.append(Event(unit, "buy", T0 + dt.timedelta(hours=1), spend, uuid.uuid4()))
            revenue[variant].append(spend)
            unit_loads = [float(round(v, 1)) for v in rng.lognormal(6, 0.5, rng.integers(0, 5)) * scale]
            events += [Event(unit, "load", T0 + dt.timedelta(minutes=k + 1), v, uuid.uuid4())
                       for k, v in enumerate(unit_loads)]  # fmt: skip
            loads[variant].append(unit_loads)
    write(exposures, events)

    # When the results are refreshed and read through the API
    experiment_results_refresh(experiment_id=experiment.pk)
    body = pm_client.get(reverse("experiment-results", kwargs={"key": "checkout"})).json()

    # Then each variant reports the summary it was computed from, and the comparison follows from it
    blocks = {m["metric"]: m for m in body["metrics"]}
    expected_unit = {v: quantile_stats_from_values(revenue[v], 0.9) for v in revenue}
    expected_event = {v: quantile_clustered_stats_from_units(loads[v], 0.95) for v in loads}
    for key, expected in (("p90_revenue", expected_unit), ("p95_load", expected_event)):
        block = blocks[key]
        assert block["type"] == "quantile" and block["error"] is None
        for variant in block["variants"]:
            want = expected[variant["variant"]]
            assert variant["units"] == 150
            assert variant["quantile_stats"] == {
                "n": want.n, "n_star": want.n_star, "estimate": want.estimate, "lower": want.lower,
                "upper": want.upper,
            }  # fmt: skip
            assert variant["mean"] == want.estimate
        (comparison,) = block["comparisons"]
        reference = compare(("control", expected["control"]), ("treatment", expected["treatment"]))
        assert comparison["relative"]["estimate"] == pytest.approx(
            reference["relative"]["estimate"], rel=1e-12
        )
        assert comparison["relative"]["ci"] == pytest.approx(reference["relative"]["ci"], rel=1e-12)
    assert blocks["p95_load"]["variants"][0]["quantile_stats"]["n"] == sum(len(u) for u in loads["control"])
    assert body["timeseries"] == []  # a quantile has no daily increments

    # And the admin results page shows them
    page = admin_client.get(reverse("admin:analytics_experiment_results", args=[experiment.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert p90.name in html and p95.name in html
    label = 'title="The mean column shows each variant\'s quantile">quantile</span>'
    assert html.count(label) == 2
