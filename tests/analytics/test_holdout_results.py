"""A holdout's results end to end: exposures logged by flag evaluation → ClickHouse → roll-up →
the results of its internal experiment (held-out units vs. the measurement sample), and the admin
pages that show them."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from analytics.results.services import experiment_results_refresh
from features.config import config_compile, snapshot_build
from features.evaluation import evaluate_feature
from features.holdouts.models import Holdout
from features.holdouts.services import holdout_create, holdout_start
from features.models import Environment, Feature
from features.services import feature_create
from metrics.models import MetricType
from tests.analytics.test_rollup import Event, Exposure, write
from tests.factories import MetricFactory

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - dt.timedelta(days=3)


def held_out_flag_and_holdout():
    feature_create(
        user=None,
        key="new_search",
        name="New search",
        type="boolean",
        default_value=False,
        environments={
            "production": {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": True}]}
        },
    )
    metric = MetricFactory(key="purchases", type=MetricType.BINOMIAL, event="purchase")
    holdout = holdout_create(
        user=None,
        key="h2027",
        name="2027",
        percentage=20,
        features=[Feature.objects.get(key="new_search")],
        metrics=[metric],
    )
    return holdout_start(holdout=holdout, user=None, now=T0 - dt.timedelta(hours=1))


def test_holdout_results__planted_lift__units_means_and_lift_of_the_two_groups(clickhouse):
    # Given a running 20% holdout of a flag, and 4000 units evaluated for it as the SDK endpoints do
    holdout = held_out_flag_and_holdout()
    config = config_compile(snapshot_build(Environment.objects.get(key="production").pk))
    exposures, events = [], []
    units = {"holdout": 0, "general": 0}
    buyers = {"holdout": 0, "general": 0}
    for i in range(4000):
        unit = f"user-{i}"
        for experiment, group, _ in evaluate_feature(config, "new_search", unit, {}).exposures:
            exposures.append(Exposure(unit, group, T0, experiment=experiment))
            units[group] += 1
            # 20% of held-out units buy, 30% of the measured general population
            if units[group] % 10 < (2 if group == "holdout" else 3):
                buyers[group] += 1
                events.append(Event(unit, "purchase", T0 + dt.timedelta(hours=1)))
    write(exposures, events)
    assert {e.experiment for e in exposures} == {"holdout-h2027"}
    assert 650 < units["holdout"] < 950 and 650 < units["general"] < 950  # 20% each of 4000

    # When its results are refreshed
    experiment_results_refresh(experiment_id=holdout.experiment_id, refreshed_by="test")

    # Then they compare the held-out units (the baseline) with the general population
    document = holdout.experiment.result.document
    [metric] = document.metrics
    by_variant = {v.variant: v for v in metric.variants}
    assert {k: by_variant[k].units for k in units} == units
    p = {k: buyers[k] / units[k] for k in units}
    for group in units:
        assert by_variant[group].mean == pytest.approx(p[group], rel=1e-9)
    [comparison] = metric.comparisons
    assert comparison.baseline == "holdout" and comparison.variant == "general"
    assert comparison.relative.estimate == pytest.approx(p["general"] / p["holdout"] - 1, rel=1e-9)
    assert document.srm.ok  # 1:1 as configured


def test_admin_holdout_page__started__links_its_results_page(clickhouse, admin_client):
    holdout = held_out_flag_and_holdout()
    page = admin_client.get(reverse("admin:features_holdout_change", args=[holdout.pk]))
    results_url = reverse("admin:analytics_experiment_results", args=[holdout.experiment_id])
    assert page.status_code == 200 and results_url.encode() in page.content
    results = admin_client.get(results_url)
    assert results.status_code == 200 and b"Results: Holdout 2027" in results.content
    flag_page = admin_client.get(
        reverse("admin:features_feature_change", args=[Feature.objects.get(key="new_search").pk])
    )
    assert b"20% of users get the default value in production" in flag_page.content
    listing = admin_client.get(reverse("admin:features_holdout_changelist"))
    assert listing.status_code == 200 and b"20% (+20% measured)" in listing.content


def test_admin_holdout_form__create__through_the_services(admin_client):
    feature_create(user=None, key="f1", name="F1", type="boolean", default_value=False)
    metric = MetricFactory(key="m1")
    response = admin_client.post(
        reverse("admin:features_holdout_add"),
        {
            "name": "Admin holdout",
            "key": "admin_hold",
            "description": "",
            "percentage": "5",
            "environments": ["production"],
            "held_out_flags": [Feature.objects.get(key="f1").pk],
            "metrics": [metric.pk],
            "hash_seed": "",
            "hash_attribute": "id",
        },
    )
    assert response.status_code == 302, response.content[-2000:]
    holdout = Holdout.objects.get(key="admin_hold")
    assert [f.key for f in holdout.features.all()] == ["f1"] and [m.key for m in holdout.metrics.all()] == [
        "m1"
    ]
