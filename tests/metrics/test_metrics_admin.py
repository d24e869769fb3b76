"""The metrics admin refuses what the API refuses, with the same words."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from metrics.models import Metric
from tests.factories import ExperimentMetricFactory, MetricFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _metric_form(**overrides) -> dict:
    data = {
        "name": "Purchase rate",
        "key": "purchase_rate",
        "type": "binomial",
        "event": "purchase",
        "higher_is_better": "on",
        "cuped_lookback_days": "14",
        "tags": "",
    }
    data.update(overrides)
    return data


def test_admin_metric_add__binomial_with_cap__form_explains_next_to_the_cap(admin_client):
    response = admin_client.post(reverse("admin:metrics_metric_add"), _metric_form(cap_value="5"))
    assert response.status_code == 200
    assert "already 0 or 1" in str(response.context["adminform"].form.errors["cap_value"])
    assert not Metric.objects.exists()


def test_admin_metric_change__capped_sum_made_binomial__form_explains_and_unchanged(admin_client):
    metric = MetricFactory(key="revenue", type="sum", event="purchase", cap_value=500)
    response = admin_client.post(
        reverse("admin:metrics_metric_change", args=[metric.pk]),
        _metric_form(key="revenue", name="Revenue", type="binomial", cap_value="500"),
    )
    assert response.status_code == 200
    assert "already 0 or 1" in str(response.context["adminform"].form.errors["cap_value"])
    metric.refresh_from_db()
    assert metric.type == "sum"


def test_admin_metric_add__binomial_without_cap__created(admin_client):
    response = admin_client.post(reverse("admin:metrics_metric_add"), _metric_form())
    assert response.status_code == 302
    assert Metric.objects.get(key="purchase_rate").cap_value is None


def test_admin_metric_delete_view__used_by_an_experiment__refused_with_the_apis_reason(admin_client):
    link = ExperimentMetricFactory(metric=MetricFactory(key="purchases"), experiment__key="checkout")

    response = admin_client.post(
        reverse("admin:metrics_metric_delete", args=[link.metric.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    text = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "used by experiments (checkout)" in text
    assert Metric.objects.filter(pk=link.metric.pk).exists()


def test_admin_metric_add__quantile_out_of_range__form_explains_next_to_the_quantile(admin_client):
    form = _metric_form(
        key="p99_load", type="quantile", event="page_load", quantile="99", quantile_scope="event"
    )
    response = admin_client.post(reverse("admin:metrics_metric_add"), form)
    assert response.status_code == 200
    assert "strictly between 0 and 1" in str(response.context["adminform"].form.errors["quantile"])
    assert not Metric.objects.exists()


def test_admin_metric_add__quantile__created(admin_client):
    form = _metric_form(
        key="p99_load", type="quantile", event="page_load", quantile="0.99", quantile_scope="event"
    )
    response = admin_client.post(reverse("admin:metrics_metric_add"), form)
    assert response.status_code == 302
    metric = Metric.objects.get(key="p99_load")
    assert (metric.quantile, metric.quantile_scope) == (0.99, "event")
