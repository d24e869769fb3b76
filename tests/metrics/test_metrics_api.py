import pytest
from django.urls import reverse

from metrics.models import Metric
from tests.factories import ExperimentMetricFactory, MetricFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("metric-list")


def payload(**overrides) -> dict:
    data = {"key": "revenue", "name": "Revenue", "type": "sum", "event": "purchase"}
    data.update(overrides)
    return data


def test_metric_create__every_contract_field__round_trips(pm_client):
    MetricFactory(key="orders", type="count")
    body = payload(
        key="revenue_per_order",
        type="ratio",
        denominator="orders",
        window_hours=72,
        higher_is_better=True,
        cap_value=1000.0,
        cuped=True,
        cuped_lookback_days=7,
        description="Average order value",
    )
    response = pm_client.post(LIST_URL, body, format="json")
    assert response.status_code == 201, response.json()
    got = pm_client.get(reverse("metric-detail", args=["revenue_per_order"])).json()
    for field, value in body.items():
        assert got[field] == value, field
    assert got["cuped_lookback_days"] == 7


def test_metric_create__defaults__contract_defaults(pm_client):
    got = pm_client.post(LIST_URL, payload(), format="json").json()
    assert got["cuped_lookback_days"] == 14
    assert got["window_hours"] is None and got["cap_value"] is None
    assert got["higher_is_better"] is True and got["cuped"] is False


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"type": "ratio"}, "denominator", "needs a denominator"),
        ({"type": "ratio", "denominator": "nope"}, "denominator", "nope"),
        ({"type": "sum", "denominator": "base"}, "denominator", "only ratio"),
        ({"type": "ratio", "denominator": "a_ratio"}, "denominator", "not a ratio"),
        ({"type": "average"}, "type", "average"),
        ({"key": "has space"}, "key", "slug"),
        ({"key": "base"}, "key", "exists"),
        ({"window_hours": 0}, "window_hours", "greater than or equal to 1"),
        ({"cap_value": -1}, "cap_value", "greater than or equal to 0"),
        ({"type": "binomial", "cap_value": 1}, "cap_value", "already 0 or 1"),
        ({"type": "binomial", "cap_value": 0}, "cap_value", "already 0 or 1"),
        ({"cuped_lookback_days": 0}, "cuped_lookback_days", ""),
        ({"event": ""}, "event", "blank"),
        ({"name": ""}, "name", "blank"),
    ],
)
def test_metric_create__invalid__400_with_field(pm_client, overrides, field, fragment):
    base = MetricFactory(key="base", type="count")
    MetricFactory(key="a_ratio", type="ratio", denominator=base)
    response = pm_client.post(LIST_URL, payload(**overrides), format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert fragment.lower() in str(response.json()[field]).lower()
    assert not Metric.objects.filter(key=payload(**overrides)["key"], name="Revenue").exists()


def test_metric_update__make_ratio_without_denominator__400(pm_client):
    MetricFactory(key="revenue", type="sum")
    response = pm_client.patch(reverse("metric-detail", args=["revenue"]), {"type": "ratio"}, format="json")
    assert response.status_code == 400
    assert "denominator" in response.json()


def test_metric_delete__used_by_experiment__409(pm_client):
    link = ExperimentMetricFactory()
    response = pm_client.delete(reverse("metric-detail", args=[link.metric.key]))
    assert response.status_code == 409
    assert Metric.objects.filter(pk=link.metric.pk).exists()


def test_metric_list__filter_type_tag_search(pm_client):
    MetricFactory(key="clicks", type="count", name="Clicks").tags.add("engagement")
    MetricFactory(key="revenue", type="sum", name="Revenue")
    assert [m["key"] for m in pm_client.get(LIST_URL, {"type": "count"}).json()["results"]] == ["clicks"]
    assert [m["key"] for m in pm_client.get(LIST_URL, {"tag": "engagement"}).json()["results"]] == ["clicks"]
    assert [m["key"] for m in pm_client.get(LIST_URL, {"search": "reven"}).json()["results"]] == ["revenue"]


def test_metric_history__change_recorded_with_user(pm_client, product_manager):
    pm_client.post(LIST_URL, payload(), format="json")
    pm_client.patch(reverse("metric-detail", args=["revenue"]), {"cap_value": 50}, format="json")
    history = Metric.objects.get(key="revenue").history.order_by("history_date")
    assert [h.history_type for h in history] == ["+", "~"]
    assert history.last().history_user == product_manager
    delta = history.last().diff_against(history.first())
    assert [c.field for c in delta.changes] == ["cap_value"]


@pytest.mark.parametrize("metric_type", ["count", "sum", "ratio"])
def test_metric_create__cap_on_non_binomial__201(pm_client, metric_type):
    MetricFactory(key="orders", type="count")
    denominator = {"denominator": "orders"} if metric_type == "ratio" else {}
    response = pm_client.post(
        LIST_URL, payload(type=metric_type, cap_value=500, **denominator), format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["cap_value"] == 500


@pytest.mark.parametrize(
    ("existing", "change"),
    [
        ({"type": "binomial"}, {"cap_value": 5}),  # a cap on a conversion metric
        ({"type": "sum", "cap_value": 500}, {"type": "binomial"}),  # a capped sum made a conversion
    ],
)
def test_metric_update__binomial_with_cap__400_names_cap_value_and_unchanged(pm_client, existing, change):
    metric = MetricFactory(key="converted", **existing)
    response = pm_client.patch(reverse("metric-detail", args=["converted"]), change, format="json")
    assert response.status_code == 400, response.json()
    assert "already 0 or 1" in str(response.json()["cap_value"])
    metric.refresh_from_db()
    assert (metric.type, metric.cap_value) == (existing["type"], existing.get("cap_value"))


def test_metric_update__binomial_made_sum_with_cap__200(pm_client):
    MetricFactory(key="converted", type="binomial")
    response = pm_client.patch(
        reverse("metric-detail", args=["converted"]), {"type": "sum", "cap_value": 5}, format="json"
    )
    assert response.status_code == 200, response.json()
