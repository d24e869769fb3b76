"""Winsorized metrics through the API: what they accept and refuse, and the cap the results used."""

import datetime as dt
import uuid

import numpy as np
import pytest
from django.urls import reverse

from analytics.results.services import experiment_results_refresh
from experiments.models import MetricRole
from metrics.models import Metric
from tests.analytics.test_results import T0, running_experiment
from tests.analytics.test_rollup import Event, Exposure, write
from tests.factories import ExperimentMetricFactory, MetricFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("metric-list")


def payload(**overrides) -> dict:
    data = {"key": "revenue", "name": "Revenue", "type": "sum", "event": "purchase", "cap_percentile": 0.99}
    data.update(overrides)
    return data


@pytest.mark.parametrize("metric_type", ["sum", "count"])
@pytest.mark.parametrize("ignore_zeros", [False, True])
def test_metric_create__percentile_cap__round_trips(pm_client, metric_type, ignore_zeros):
    body = payload(type=metric_type, cap_ignore_zeros=ignore_zeros)
    response = pm_client.post(LIST_URL, body, format="json")
    assert response.status_code == 201, response.json()
    got = pm_client.get(reverse("metric-detail", args=["revenue"])).json()
    assert (got["cap_percentile"], got["cap_ignore_zeros"], got["cap_value"]) == (0.99, ignore_zeros, None)


def test_metric_create__no_percentile_cap__defaults(pm_client):
    got = pm_client.post(LIST_URL, payload(cap_percentile=None), format="json").json()
    assert got["cap_percentile"] is None and got["cap_ignore_zeros"] is False


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"cap_percentile": 0}, "cap_percentile", "strictly between 0 and 1"),
        ({"cap_percentile": 1}, "cap_percentile", "strictly between 0 and 1"),
        ({"cap_percentile": 99}, "cap_percentile", "strictly between 0 and 1"),
        ({"cap_percentile": -0.5}, "cap_percentile", "strictly between 0 and 1"),
        ({"cap_percentile": "p99"}, "cap_percentile", "number"),
        ({"cap_value": 500}, "cap_percentile", "not both"),
        ({"type": "binomial"}, "cap_percentile", "count and sum"),
        ({"type": "quantile", "quantile": 0.9, "quantile_scope": "unit"}, "cap_percentile", "count and sum"),
        ({"type": "ratio", "denominator": "orders"}, "cap_percentile", "count and sum"),
        ({"cap_percentile": None, "cap_ignore_zeros": True}, "cap_ignore_zeros", "percentile cap"),
    ],
)
def test_metric_create__invalid_percentile_cap__400_names_the_field(pm_client, overrides, field, fragment):
    MetricFactory(key="orders", type="count")
    response = pm_client.post(LIST_URL, payload(**overrides), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert fragment in str(response.json()[field])
    assert not Metric.objects.filter(key="revenue").exists()


def test_metric_update__fixed_cap_added_to_percentile_capped__400_and_unchanged(pm_client):
    MetricFactory(key="revenue", type="sum", cap_percentile=0.95)
    response = pm_client.patch(reverse("metric-detail", args=["revenue"]), {"cap_value": 10}, format="json")
    assert response.status_code == 400
    assert "not both" in str(response.json()["cap_percentile"])
    assert Metric.objects.get(key="revenue").cap_value is None


def test_winsorized_metric__refresh__results_report_the_cap_used(clickhouse, pm_client, admin_client):
    # Given revenue winsorized at p90 of all units (zeros included), a fixed-cap and an uncapped metric
    experiment = running_experiment(metrics=())
    for key, caps in (("revenue_p90", {"cap_percentile": 0.9}), ("revenue_capped", {"cap_value": 50.0}),
                      ("revenue", {})):  # fmt: skip
        metric = MetricFactory(key=key, type="sum", event="buy", **caps)
        ExperimentMetricFactory(experiment=experiment, metric=metric, role=MetricRole.SECONDARY)
    rng = np.random.default_rng(3)
    exposures, events, values = [], [], {"control": [], "treatment": []}
    for variant in values:
        for i in range(100):
            unit = f"{variant}-{i}"
            exposures.append(Exposure(unit, variant, T0, experiment="checkout"))
            spend = float(round(rng.lognormal(3, 1.2), 2)) if i % 3 else 0.0
            if spend:
                events.append(Event(unit, "buy", T0 + dt.timedelta(hours=1), spend, uuid.uuid4()))
            values[variant].append(spend)
    write(exposures, events)

    # When the results are refreshed and read through the API
    experiment_results_refresh(experiment_id=experiment.pk)
    body = pm_client.get(reverse("experiment-results", kwargs={"key": "checkout"})).json()

    # Then each metric reports its cap, the winsorized one numpy's p90 of the pooled values
    blocks = {m["metric"]: m for m in body["metrics"]}
    cap = float(np.quantile(values["control"] + values["treatment"], 0.9))
    assert blocks["revenue_p90"]["cap_used"] == pytest.approx(cap, rel=1e-12)
    assert blocks["revenue_capped"]["cap_used"] == 50.0
    assert blocks["revenue"]["cap_used"] is None
    control = next(v for v in blocks["revenue_p90"]["variants"] if v["variant"] == "control")
    assert control["mean"] == pytest.approx(np.minimum(values["control"], cap).mean(), rel=1e-12)

    # And the admin results page says what each metric was capped at
    from analytics.admin.summary import number_text

    page = admin_client.get(
        reverse("admin:analytics_experiment_results", args=[experiment.pk])
    ).content.decode()
    assert f">capped at {number_text(cap)}</span>" in page and ">capped at 50.00</span>" in page
    assert page.count(">capped at ") == 2


def test_admin_metric_add__fixed_and_percentile_cap__form_explains_next_to_the_percentile(client, superuser):
    client.force_login(superuser)
    form = {"name": "Revenue", "key": "revenue", "type": "sum", "event": "purchase", "higher_is_better": "on",
            "cuped_lookback_days": "14", "tags": "", "cap_value": "500", "cap_percentile": "0.99"}  # fmt: skip
    response = client.post(reverse("admin:metrics_metric_add"), form)
    assert response.status_code == 200
    assert "not both" in str(response.context["adminform"].form.errors["cap_percentile"])
    assert not Metric.objects.exists()

    form.pop("cap_value")
    response = client.post(reverse("admin:metrics_metric_add"), {**form, "cap_ignore_zeros": "on"})
    assert response.status_code == 302
    metric = Metric.objects.get(key="revenue")
    assert (metric.cap_percentile, metric.cap_ignore_zeros, metric.cap_value) == (0.99, True, None)
