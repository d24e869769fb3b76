"""A metric keeps its type while running experiments use it (directly or as a ratio's denominator):
their results would mix both kinds of values. Refused by the service: 409 in the API, a form error in
the admin, saying why and what to do instead."""

import pytest
from django.urls import reverse

from experiments.services import experiment_pause, experiment_start, experiment_stop
from metrics.models import Metric
from tests.factories import ExperimentFactory, ExperimentMetricFactory, MetricFactory

pytestmark = pytest.mark.django_db


def _used_by(metric: Metric, *, lifecycle: tuple = ()) -> None:
    """Attach ``metric`` to an experiment, start it, then apply ``lifecycle`` services in order."""
    experiment = ExperimentFactory(key="checkout_button")
    ExperimentMetricFactory(experiment=experiment, metric=metric)
    experiment = experiment_start(experiment=experiment, user=None)
    for service in lifecycle:
        experiment = service(experiment=experiment, user=None)


def _patch(client, metric: Metric, **fields):
    return client.patch(reverse("metric-detail", args=[metric.key]), fields, format="json")


@pytest.mark.parametrize("lifecycle", [(), (experiment_pause,)], ids=["running", "paused"])
def test_metric_update__type_of_a_metric_running_experiments_use__409_with_reason(pm_client, lifecycle):
    metric = MetricFactory(key="purchases", type="binomial", event="purchase")
    _used_by(metric, lifecycle=lifecycle)

    response = _patch(pm_client, metric, type="count")

    assert response.status_code == 409, response.json()
    message = " ".join(response.json()["type"])
    assert "from binomial to count" in message and "checkout_button" in message
    assert "Create a new metric" in message
    metric.refresh_from_db()
    assert metric.type == "binomial"


def test_metric_update__type_of_a_running_ratio_metrics_denominator__409(pm_client):
    orders = MetricFactory(key="orders", type="count", event="order")
    revenue_per_order = MetricFactory(
        key="revenue_per_order", type="ratio", event="purchase", denominator=orders
    )
    _used_by(revenue_per_order)

    response = _patch(pm_client, orders, type="sum")

    assert response.status_code == 409
    assert "checkout_button" in " ".join(response.json()["type"])


@pytest.mark.parametrize(
    "lifecycle", [None, (experiment_stop,)], ids=["draft experiment", "stopped experiment"]
)
def test_metric_update__type_when_no_experiment_collects_data__200(pm_client, lifecycle):
    metric = MetricFactory(key="purchases", type="binomial", event="purchase")
    if lifecycle is None:
        ExperimentMetricFactory(metric=metric)
    else:
        _used_by(metric, lifecycle=lifecycle)

    response = _patch(pm_client, metric, type="count")

    assert response.status_code == 200, response.json()
    metric.refresh_from_db()
    assert metric.type == "count"


def test_metric_update__other_fields_while_running__200(pm_client):
    metric = MetricFactory(key="purchases", type="binomial", event="purchase")
    _used_by(metric)

    response = _patch(pm_client, metric, type="binomial", name="Purchases (any)")

    assert response.status_code == 200, response.json()


def test_admin_metric_change__type_while_running__form_error_and_kept(client, product_manager):
    client.force_login(product_manager)
    metric = MetricFactory(key="purchases", name="Purchases", type="binomial", event="purchase")
    _used_by(metric)
    form = {
        "name": "Purchases",
        "key": "purchases",
        "type": "count",
        "event": "purchase",
        "higher_is_better": "on",
        "cuped_lookback_days": "14",
        "tags": "",
    }

    response = client.post(reverse("admin:metrics_metric_change", args=[metric.pk]), form)

    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors["type"])
    assert "while running experiments use it (checkout_button)" in errors
    metric.refresh_from_db()
    assert metric.type == "binomial"
