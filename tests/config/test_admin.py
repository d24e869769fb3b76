"""Every admin page renders for a product manager and a superuser, and the admin's actions work."""

import re

import pytest
from django.contrib import admin
from django.urls import reverse

from experiments.models import Experiment
from features.models import Environment, SdkKey, hash_sdk_key
from features.services import sdk_key_create
from tests.factories import (
    ExperimentFactory,
    ExperimentMetricFactory,
    FeatureEnvironmentFactory,
    FeatureRuleFactory,
    MetricFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_su(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def pm_admin(client, product_manager):
    client.force_login(product_manager)
    return client


def _objects():
    link = ExperimentMetricFactory()
    rule = FeatureRuleFactory()
    FeatureEnvironmentFactory(feature=rule.feature)
    key, _ = sdk_key_create(environment=Environment.objects.get(key="production"))
    return [link.metric, link.experiment, rule.feature, Environment.objects.first(), key]


def test_admin__every_changelist_add_and_change_page__renders(admin_client_su):
    objects = {type(o): o for o in _objects()}
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = admin_client_su.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == 200, opts.label
        if model_admin.has_add_permission(changelist.wsgi_request):
            add = admin_client_su.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
            assert add.status_code == 200, opts.label
        obj = objects.get(model) or model.objects.first()
        if obj is not None:
            change = admin_client_su.get(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            )
            assert change.status_code == 200, opts.label
            history = admin_client_su.get(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[obj.pk])
            )
            assert history.status_code == 200, opts.label


@pytest.mark.parametrize("url_name", ["experiments_experiment", "metrics_metric", "features_feature"])
def test_admin__product_manager__sees_the_pages(pm_admin, url_name):
    assert pm_admin.get(reverse(f"admin:{url_name}_changelist")).status_code == 200
    assert pm_admin.get(reverse(f"admin:{url_name}_add")).status_code == 200


def test_admin__changelist_filters_and_search__render(admin_client_su):
    ExperimentFactory(name="Checkout colour", status="running").tags.add("checkout")
    url = reverse("admin:experiments_experiment_changelist")
    response = admin_client_su.get(url, {"status__exact": "running", "q": "checkout"})
    assert response.status_code == 200
    assert b"Checkout colour" in response.content


def _experiment_form(**overrides) -> dict:
    data = {
        "name": "Green button",
        "key": "green_button",
        "hypothesis": "Green sells more",
        "traffic_allocation": "1",
        "targeting": "{}",
        "engine": "frequentist",
        "alpha": "0.05",
        "sequential_tuning": "5000",
        "correction": "none",
        "srm_threshold": "0.001",
        "minimum_detectable_effect": "0.05",
        "analysis_environments": ["production"],
        "tags": "checkout",
        "variants-TOTAL_FORMS": "2",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "2",
        "variants-MAX_NUM_FORMS": "1000",
        "variants-0-position": "0",
        "variants-0-key": "control",
        "variants-0-name": "Blue",
        "variants-0-weight": "1",
        "variants-0-payload": "null",
        "variants-1-position": "1",
        "variants-1-key": "treatment",
        "variants-1-name": "Green",
        "variants-1-weight": "1",
        "variants-1-payload": "null",
        "metric_links-TOTAL_FORMS": "0",
        "metric_links-INITIAL_FORMS": "0",
        "metric_links-MIN_NUM_FORMS": "0",
        "metric_links-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def test_admin_experiment_add__valid__created_with_variants(admin_client_su, superuser):
    response = admin_client_su.post(reverse("admin:experiments_experiment_add"), _experiment_form())
    assert response.status_code == 302, response.context["errors"] if response.context else response
    experiment = Experiment.objects.get(key="green_button")
    assert [v.key for v in experiment.variants.all()] == ["control", "treatment"]
    assert experiment.owner == superuser
    assert experiment.history.count() == 1


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"variants-1-key": "control"}, "duplicate"),
        ({"variants-1-weight": "0"}, "greater than 0"),
        ({"targeting": '{"age": {"$older": 3}}'}, "$older"),
        ({"traffic_allocation": "2"}, "less than or equal to 1"),
    ],
)
def test_admin_experiment_add__invalid__form_explains(admin_client_su, overrides, fragment):
    response = admin_client_su.post(
        reverse("admin:experiments_experiment_add"), _experiment_form(**overrides)
    )
    assert response.status_code == 200
    assert fragment in response.content.decode()
    assert not Experiment.objects.exists()


def test_admin_experiment_change__running__locked_fields_read_only(admin_client_su):
    experiment = ExperimentFactory(status="running")
    page = admin_client_su.get(
        reverse("admin:experiments_experiment_change", args=[experiment.pk])
    ).content.decode()
    assert 'name="targeting"' not in page
    assert 'name="variants-0-weight"' not in page
    assert 'name="traffic_allocation"' in page
    assert "lifecycle-pause" in page and "lifecycle-stop" in page and "lifecycle-start" not in page


def test_admin_experiment_change__stale_loaded_version__refused(admin_client_su):
    experiment = ExperimentFactory(version=4)
    data = _experiment_form(
        key=experiment.key,
        loaded_version="3",
        **{
            "variants-INITIAL_FORMS": "2",
            "variants-0-id": str(experiment.variants.all()[0].pk),
            "variants-0-experiment": str(experiment.pk),
            "variants-1-id": str(experiment.variants.all()[1].pk),
            "variants-1-experiment": str(experiment.pk),
        },
    )
    response = admin_client_su.post(
        reverse("admin:experiments_experiment_change", args=[experiment.pk]), data
    )
    assert response.status_code == 200
    assert "Someone else changed this experiment" in response.content.decode()
    experiment.refresh_from_db()
    assert experiment.name != "Green button"


def test_admin_lifecycle_button__start_then_refused_start__message(admin_client_su):
    experiment = ExperimentFactory()
    url = reverse("admin:experiments_experiment_lifecycle", args=[experiment.pk, "start"])
    response = admin_client_su.post(url, follow=True)
    assert "start done" in response.content.decode()
    experiment.refresh_from_db()
    assert experiment.status == "running"
    response = admin_client_su.post(url, follow=True)
    assert "Could not start" in response.content.decode()


def test_admin_stop_page__records_decision(admin_client_su):
    experiment = ExperimentFactory(status="running")
    url = reverse("admin:experiments_experiment_lifecycle", args=[experiment.pk, "stop"])
    assert admin_client_su.get(url).status_code == 200
    admin_client_su.post(url, {"decision_variant": "treatment", "reason": "won"})
    experiment.refresh_from_db()
    assert (experiment.status, experiment.decision_variant, experiment.decision_reason) == (
        "stopped",
        "treatment",
        "won",
    )


@pytest.mark.parametrize(
    ("action", "statuses", "expected"),
    [
        ("bulk_start", ["draft", "running"], ["running", "running"]),
        ("bulk_pause", ["running", "draft"], ["paused", "draft"]),
        ("bulk_resume", ["paused"], ["running"]),
        ("bulk_stop", ["running", "paused"], ["stopped", "stopped"]),
        ("bulk_archive", ["stopped", "running"], ["archived", "running"]),
    ],
)
def test_admin_bulk_actions__call_services__refusals_reported(admin_client_su, action, statuses, expected):
    experiments = [ExperimentFactory(status=s) for s in statuses]
    response = admin_client_su.post(
        reverse("admin:experiments_experiment_changelist"),
        {"action": action, "_selected_action": [e.pk for e in experiments]},
        follow=True,
    )
    assert response.status_code == 200
    for experiment, status in zip(experiments, expected, strict=True):
        experiment.refresh_from_db()
        assert experiment.status == status
    if expected != statuses and any(s == e for s, e in zip(statuses, expected, strict=True)):
        assert "Could not" in response.content.decode()


def test_admin_sdk_key_add__shows_key_once_and_stores_hash(admin_client_su):
    env = Environment.objects.get(key="staging")
    response = admin_client_su.post(
        reverse("admin:features_sdkkey_add"), {"environment": env.pk, "name": "web"}, follow=True
    )
    page = response.content.decode()
    raw = re.search(r"(sdk_[A-Za-z0-9_\-]{20,})", page).group(1)
    key = SdkKey.objects.get()
    assert key.hashed_key == hash_sdk_key(raw)
    assert raw not in str(key.__dict__)
    page_again = admin_client_su.get(reverse("admin:features_sdkkey_change", args=[key.pk])).content.decode()
    assert raw not in page_again


def test_admin_sdk_key__client_kind__publishable_key_shown_once(admin_client_su):
    env = Environment.objects.get(key="production")
    response = admin_client_su.post(
        reverse("admin:features_sdkkey_add"),
        {"environment": env.pk, "name": "web", "kind": "client"},
        follow=True,
    )
    raw = re.search(r"(pk_[A-Za-z0-9_\-]{20,})", response.content.decode()).group(1)
    key = SdkKey.objects.get()
    assert key.kind == "client" and key.hashed_key == hash_sdk_key(raw)
    listing = admin_client_su.get(reverse("admin:features_sdkkey_changelist")).content.decode()
    assert "Client (publishable, read-only)" in listing


def _feature_form(**overrides) -> dict:
    envs = list(Environment.objects.all())
    data = {
        "name": "Dark mode",
        "key": "dark_mode",
        "type": "boolean",
        "default_value": "false",
        "environment_settings-TOTAL_FORMS": "1",
        "environment_settings-INITIAL_FORMS": "0",
        "environment_settings-MIN_NUM_FORMS": "0",
        "environment_settings-MAX_NUM_FORMS": "1000",
        "environment_settings-0-environment": str(envs[2].pk),
        "environment_settings-0-enabled": "on",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "rules-0-environment": str(envs[2].pk),
        "rules-0-position": "0",
        "rules-0-type": "rollout",
        "rules-0-condition": '{"plan": "pro"}',
        "rules-0-value": "true",
        "rules-0-coverage": "0.3",
        "prerequisites-TOTAL_FORMS": "0",
        "prerequisites-INITIAL_FORMS": "0",
        "prerequisites-MIN_NUM_FORMS": "0",
        "prerequisites-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def test_admin_feature_add__rules_as_rows__saved(admin_client_su):
    from features.models import Feature

    response = admin_client_su.post(reverse("admin:features_feature_add"), _feature_form())
    assert response.status_code == 302
    feature = Feature.objects.get(key="dark_mode")
    rule = feature.rules.get()
    assert (rule.type, rule.condition, rule.value, rule.coverage) == ("rollout", {"plan": "pro"}, True, 0.3)
    assert feature.environment_settings.count() == 3


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"default_value": '"on"'}, "true or false"),
        ({"rules-0-value": '"yes"'}, "true or false"),
        ({"rules-0-coverage": "3"}, "coverage"),
        ({"rules-0-condition": '{"plan": {"$bogus": 1}}'}, "$bogus"),
    ],
)
def test_admin_feature_add__invalid__form_explains(admin_client_su, overrides, fragment):
    from features.models import Feature

    response = admin_client_su.post(reverse("admin:features_feature_add"), _feature_form(**overrides))
    assert response.status_code == 200
    assert fragment in response.content.decode()
    assert not Feature.objects.exists()


def test_admin_metric_add__ratio_without_denominator__explains(admin_client_su):
    MetricFactory(key="orders")
    response = admin_client_su.post(
        reverse("admin:metrics_metric_add"),
        {"name": "AOV", "key": "aov", "type": "ratio", "event": "purchase", "cuped_lookback_days": "14"},
    )
    assert response.status_code == 200
    assert "needs a denominator" in response.content.decode()
