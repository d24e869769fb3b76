"""The flag page's safe rollouts panel: starting one, and what it shows while monitoring, rolled back
and finished."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from features.governance.models import ChangeRequest
from features.models import Environment, SafeRollout, SafeRolloutStatus
from features.safe_rollouts import safe_rollout_finish, safe_rollout_roll_back, safe_rollout_start
from tests.factories import (
    FeatureEnvironmentFactory,
    FeatureFactory,
    FeatureRuleFactory,
    MetricFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

EVIDENCE = {
    "computed_at": "2026-12-07T01:00:00+00:00",
    "threshold": 0.05,
    "srm_ok": True,
    "guardrails": [
        {"metric": "checkout_errors", "units": {"control": 900, "treatment": 880}, "relative": 0.0612,
         "relative_ci": [0.021, 0.101], "p_value": 0.0021, "regressed": True, "error": None},
    ],
}  # fmt: skip


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def rollout_rule():
    feature = FeatureFactory(key="new_checkout")
    production = Environment.objects.get(key="production")
    FeatureEnvironmentFactory(feature=feature, environment=production, enabled=True)
    return FeatureRuleFactory(
        feature=feature, environment=production, type="rollout", coverage=0.2, value=True
    )


def page(client, feature) -> str:
    response = client.get(reverse("admin:features_feature_change", args=[feature.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_flag_page__rollout_rule__offers_to_start_and_post_starts_monitoring(admin_client, rollout_rule):
    metric = MetricFactory(key="checkout_errors")
    assert 'id="safe-rollout-form"' in page(admin_client, rollout_rule.feature)

    response = admin_client.post(
        reverse("admin:features_feature_safe_rollout", args=[rollout_rule.feature.pk]),
        {"rule": rollout_rule.pk, "metrics": [metric.pk], "finish_after_hours": "48"},
    )

    assert response.status_code == 302
    safe = SafeRollout.objects.get(rule=rollout_rule)
    assert safe.status == SafeRolloutStatus.MONITORING and safe.finish_after_hours == 48
    assert list(safe.experiment.metric_links.values_list("metric__key", "role")) == [
        ("checkout_errors", "guardrail")
    ]
    html = page(admin_client, rollout_rule.feature)
    assert 'data-status="monitoring"' in html and "finishes after 48 h" in html
    assert 'id="safe-rollout-form"' not in html  # the only partial rollout is monitored now


def test_flag_page__bad_post__no_safe_rollout_and_message_names_the_field(admin_client, rollout_rule):
    response = admin_client.post(
        reverse("admin:features_feature_safe_rollout", args=[rollout_rule.feature.pk]),
        {"rule": rollout_rule.pk, "finish_after_hours": "0"},
        follow=True,
    )
    assert response.status_code == 200
    assert not SafeRollout.objects.exists()
    text = response.content.decode()
    assert "Safe rollout not started: metrics" in text and "finish_after_hours" in text


def test_flag_page__rolled_back__shows_the_evidence(admin_client, rollout_rule):
    safe = safe_rollout_start(rule=rollout_rule, metrics=[MetricFactory()])
    safe_rollout_roll_back(safe_rollout=safe, evidence=EVIDENCE, reason="Safe rollout rolled back: x")

    html = page(admin_client, rollout_rule.feature)

    assert 'data-status="rolled_back"' in html and "coverage set to 0" in html
    assert "checkout_errors" in html and "+6.12%" in html and "[+2.10%, +10.10%]" in html
    assert "0.0021" in html and "<strong>regression</strong>" in html


def test_flag_page__finished__says_so(admin_client, rollout_rule):
    safe = safe_rollout_start(rule=rollout_rule, metrics=[MetricFactory()], finish_after_hours=24)
    evidence = {**EVIDENCE, "guardrails": [{**EVIDENCE["guardrails"][0], "regressed": False, "p_value": 0.4}]}
    assert safe_rollout_finish(safe_rollout=safe, evidence=evidence, reason="Safe rollout finished")
    assert not safe_rollout_finish(safe_rollout=safe, evidence=evidence, reason="again")  # decided once

    html = page(admin_client, rollout_rule.feature)

    assert 'data-status="finished"' in html and "coverage set to 100% after 24 h" in html
    rollout_rule.refresh_from_db()
    assert rollout_rule.coverage == 1.0


def test_flag_page__view_only_staff__sees_the_panel_cannot_start(client, rollout_rule):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_feature"))
    client.force_login(viewer)
    safe_rollout_start(rule=FeatureRuleFactory(feature=rollout_rule.feature, type="rollout", coverage=0.5),
                       metrics=[MetricFactory()])  # fmt: skip

    html = page(client, rollout_rule.feature)
    response = client.post(
        reverse("admin:features_feature_safe_rollout", args=[rollout_rule.feature.pk]),
        {"rule": rollout_rule.pk, "metrics": [MetricFactory().pk]},
    )

    assert 'data-status="monitoring"' in html and 'id="safe-rollout-form"' not in html
    assert response.status_code == 403
    assert SafeRollout.objects.filter(rule=rollout_rule).count() == 0


def test_roll_back__environment_requires_approval__applies_at_once_without_a_change_request(rollout_rule):
    Environment.objects.filter(key="production").update(requires_approval=True)
    safe = safe_rollout_start(rule=rollout_rule, metrics=[MetricFactory()])

    assert safe_rollout_roll_back(safe_rollout=safe, evidence=EVIDENCE, reason="Safe rollout rolled back: x")

    rollout_rule.refresh_from_db()
    assert rollout_rule.coverage == 0.0 and not ChangeRequest.objects.exists()
