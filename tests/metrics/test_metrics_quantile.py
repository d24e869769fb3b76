"""Quantile metrics through the API: what they need, what they refuse (400 naming the field)."""

import pytest
from django.urls import reverse

from metrics.models import Metric
from tests.factories import MetricFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("metric-list")


def payload(**overrides) -> dict:
    data = {"key": "p99_load", "name": "p99 load time", "type": "quantile", "event": "page_load",
            "quantile": 0.99, "quantile_scope": "event", "higher_is_better": False}  # fmt: skip
    data.update(overrides)
    return data


@pytest.mark.parametrize("scope", ["unit", "event"])
def test_quantile_metric_create__valid__round_trips(pm_client, scope):
    body = payload(quantile_scope=scope, window_hours=24, cap_value=60000.0)
    response = pm_client.post(LIST_URL, body, format="json")
    assert response.status_code == 201, response.json()
    got = pm_client.get(reverse("metric-detail", args=["p99_load"])).json()
    for field, value in body.items():
        assert got[field] == value, field


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"quantile": None}, "quantile", "needs its quantile"),
        ({"quantile": 0}, "quantile", "strictly between 0 and 1"),
        ({"quantile": 1}, "quantile", "strictly between 0 and 1"),
        ({"quantile": 1.5}, "quantile", "strictly between 0 and 1"),
        ({"quantile": -0.1}, "quantile", "strictly between 0 and 1"),
        ({"quantile": "p90"}, "quantile", "number"),
        ({"quantile_scope": ""}, "quantile_scope", "unit"),
        ({"quantile_scope": "session"}, "quantile_scope", "session"),
        ({"cuped": True}, "cuped", "quantile"),
        ({"type": "sum"}, "quantile", "only quantile metrics"),
        ({"type": "sum", "quantile": None}, "quantile_scope", "only quantile metrics"),
    ],
)
def test_quantile_metric_create__invalid__400_with_field(pm_client, overrides, field, fragment):
    response = pm_client.post(LIST_URL, payload(**overrides), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert fragment.lower() in str(response.json()[field]).lower()
    assert not Metric.objects.filter(key="p99_load").exists()


def test_ratio_metric__quantile_denominator__400(pm_client):
    MetricFactory(key="p90_rev", type="quantile", quantile=0.9, quantile_scope="unit")
    body = {"key": "r", "name": "R", "type": "ratio", "event": "purchase", "denominator": "p90_rev"}
    response = pm_client.post(LIST_URL, body, format="json")
    assert response.status_code == 400
    assert "quantile" in str(response.json()["denominator"])
