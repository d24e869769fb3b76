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
from analytics.ingestion import events_write, exposures_write
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
    exposures_write(rows=[{"experiment": "other", "variant": "a", "unit_id": f"u{i}",
                           "timestamp": now - dt.timedelta(hours=2 + i % 300)} for i in range(1400)])  # fmt: skip
    events_write(rows=[{"name": "purchase", "unit_id": f"u{i}", "timestamp": now - dt.timedelta(days=1)}
                       for i in range(0, 1400, 10)])  # fmt: skip
    events_write(rows=[{"name": "purchase", "unit_id": "old", "timestamp": now - dt.timedelta(days=20)}])

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
