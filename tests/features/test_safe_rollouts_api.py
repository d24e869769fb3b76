"""Safe rollouts through /api/v1/flags/: a rollout rule's ``safe_rollout`` starts, shows, keeps and
stops its monitoring; errors name the field (docs/api.md, "Safe rollouts")."""

import datetime as dt

import pytest
from django.urls import reverse

from experiments.models import ExperimentStatus, MetricRole
from features.models import FeatureRule, SafeRollout, SafeRolloutStatus
from features.safe_rollouts import safe_rollout_roll_back
from tests.factories import MetricFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("feature-list")
DETAIL_URL = reverse("feature-detail", args=["new_checkout"])
MONITOR = {"metrics": ["checkout_errors", "page_latency"], "alpha": 0.02, "finish_after_hours": 72}


@pytest.fixture
def guardrails():
    return [MetricFactory(key="checkout_errors"), MetricFactory(key="page_latency")]


def rollout(coverage=0.2, **extra) -> dict:
    return {"type": "rollout", "condition": {}, "value": True, "coverage": coverage, **extra}


def create(client, *rules):
    return client.post(
        LIST_URL,
        {
            "key": "new_checkout",
            "name": "New checkout",
            "type": "boolean",
            "default_value": False,
            "environments": {"production": {"enabled": True, "rules": list(rules)}},
        },
        format="json",
    )


def production_rules(client) -> list[dict]:
    return client.get(DETAIL_URL).json()["environments"]["production"]["rules"]


def write_rules(client, rules):
    return client.patch(DETAIL_URL, {"environments": {"production": {"rules": rules}}}, format="json")


def test_create__rollout_with_safe_rollout__starts_monitoring_and_shows_it(pm_client, guardrails):
    response = create(
        pm_client,
        {"type": "force", "condition": {"plan": "internal"}, "value": True},
        rollout(safe_rollout=MONITOR),
    )

    assert response.status_code == 201, response.json()
    safe = SafeRollout.objects.get()
    assert safe.rule.position == 1 and safe.rule.coverage == 0.2
    assert safe.status == SafeRolloutStatus.MONITORING and safe.finish_after_hours == 72
    assert safe.experiment.alpha == 0.02 and safe.experiment.status == ExperimentStatus.RUNNING
    links = safe.experiment.metric_links.order_by("id")
    assert [(link.metric.key, link.role) for link in links] == [
        ("checkout_errors", MetricRole.GUARDRAIL),
        ("page_latency", MetricRole.GUARDRAIL),
    ]
    shown = response.json()["environments"]["production"]["rules"][1]["safe_rollout"]
    assert shown == {
        **MONITOR,
        "status": "monitoring",
        "experiment": safe.experiment.key,
        "started_at": shown["started_at"],
        "decided_at": None,
        "evidence": {},
    }
    assert dt.datetime.fromisoformat(shown["started_at"]) == safe.started_at
    assert "safe_rollout" not in response.json()["environments"]["production"]["rules"][0]


def test_write_back__same_settings__keeps_the_rule_its_monitoring_and_evidence(pm_client, guardrails):
    create(pm_client, rollout(safe_rollout=MONITOR))
    safe = SafeRollout.objects.get()
    SafeRollout.objects.filter(pk=safe.pk).update(evidence={"guardrails": [], "alpha": 0.02})
    rules = production_rules(pm_client)

    # When: a rule is added in front and the monitored one is written back as it was read
    response = write_rules(
        pm_client, [{"type": "force", "condition": {"plan": "internal"}, "value": True}, *rules]
    )

    assert response.status_code == 200, response.json()
    kept = SafeRollout.objects.get()
    assert kept.pk == safe.pk and kept.rule_id == safe.rule_id and kept.rule.position == 1
    assert kept.evidence == {"guardrails": [], "alpha": 0.02}
    assert production_rules(pm_client)[1]["safe_rollout"]["evidence"] == kept.evidence


def us_de_rules(us_coverage: float, de_coverage: float) -> list[dict]:
    return [
        rollout(coverage=us_coverage, condition={"country": "US"}, safe_rollout=MONITOR),
        rollout(coverage=de_coverage, condition={"country": "DE"}, safe_rollout=MONITOR),
    ]


@pytest.mark.parametrize(("us_coverage", "de_coverage"), [(0.2, 0.2), (0.1, 0.3)])
def test_write__one_of_two_alike_monitored_rules_removed__the_other_keeps_its_own(
    pm_client, guardrails, us_coverage, de_coverage
):
    # Given two rollout rules with the same safe-rollout settings, for US and for DE, each with evidence
    assert create(pm_client, *us_de_rules(us_coverage, de_coverage)).status_code == 201
    us, de = SafeRollout.objects.order_by("rule__position")
    SafeRollout.objects.filter(pk=us.pk).update(evidence={"seen": "US"})
    SafeRollout.objects.filter(pk=de.pk).update(evidence={"seen": "DE"})
    de_as_read = production_rules(pm_client)[1]

    # When only the DE rule is written back, exactly as read
    response = write_rules(pm_client, [de_as_read])

    # Then DE keeps its own rule row, monitoring and evidence; US's monitoring is the one that stops
    assert response.status_code == 200, response.json()
    kept = SafeRollout.objects.get()
    assert kept.pk == de.pk and kept.rule_id == de.rule_id and kept.experiment_id == de.experiment_id
    assert kept.evidence == {"seen": "DE"} and kept.rule.condition == {"country": "DE"}
    assert kept.rule.coverage == de_coverage and kept.status == SafeRolloutStatus.MONITORING
    us.experiment.refresh_from_db()
    de.experiment.refresh_from_db()
    assert us.experiment.status == ExperimentStatus.STOPPED
    assert de.experiment.status == ExperimentStatus.RUNNING
    assert production_rules(pm_client)[0]["safe_rollout"]["experiment"] == de.experiment.key


def test_write__alike_monitored_rules_swapped__each_keeps_its_own(pm_client, guardrails):
    assert create(pm_client, *us_de_rules(0.1, 0.3)).status_code == 201
    us, de = SafeRollout.objects.order_by("rule__position")
    us_as_read, de_as_read = production_rules(pm_client)

    response = write_rules(pm_client, [de_as_read, us_as_read])

    assert response.status_code == 200, response.json()
    assert SafeRollout.objects.get(pk=de.pk).rule.position == 0
    assert SafeRollout.objects.get(pk=us.pk).rule.position == 1
    assert SafeRollout.objects.filter(status=SafeRolloutStatus.MONITORING).count() == 2


def test_write__monitored_rule_with_another_condition__starts_a_new_monitoring(pm_client, guardrails):
    create(pm_client, rollout(condition={"country": "US"}, safe_rollout=MONITOR))
    first = SafeRollout.objects.get()

    response = write_rules(pm_client, [rollout(condition={"country": "DE"}, safe_rollout=MONITOR)])

    assert response.status_code == 200, response.json()
    second = SafeRollout.objects.get()
    assert second.pk != first.pk and second.rule.condition == {"country": "DE"}
    first.experiment.refresh_from_db()
    assert first.experiment.status == ExperimentStatus.STOPPED


def test_rolled_back__shows_status_evidence_and_coverage_zero__and_writes_back(pm_client, guardrails):
    create(pm_client, rollout(safe_rollout=MONITOR))
    safe = SafeRollout.objects.get()
    evidence = {
        "guardrails": [{"metric": "checkout_errors", "relative": 0.3, "p_value": 1e-6, "regressed": True}]
    }
    assert safe_rollout_roll_back(
        safe_rollout=safe, evidence=evidence, reason="Safe rollout rolled back: checkout_errors +30.0%"
    )

    rule = production_rules(pm_client)[0]
    assert rule["coverage"] == 0.0
    assert rule["safe_rollout"]["status"] == "rolled_back"
    assert rule["safe_rollout"]["evidence"] == evidence
    assert rule["safe_rollout"]["decided_at"] is not None
    # The rolled-back rule written back as read keeps its decision (coverage 0 is fine once decided).
    assert write_rules(pm_client, [rule]).status_code == 200
    assert SafeRollout.objects.get().status == SafeRolloutStatus.ROLLED_BACK


def test_write__without_safe_rollout__stops_the_monitoring(pm_client, guardrails):
    create(pm_client, rollout(safe_rollout=MONITOR))
    experiment = SafeRollout.objects.get().experiment

    response = write_rules(pm_client, [rollout()])

    assert response.status_code == 200, response.json()
    assert not SafeRollout.objects.exists()
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.STOPPED and experiment.stopped_at is not None
    assert "safe_rollout" not in production_rules(pm_client)[0]


def test_write__changed_settings__starts_a_new_monitoring(pm_client, guardrails):
    create(pm_client, rollout(safe_rollout=MONITOR))
    first = SafeRollout.objects.get()

    response = write_rules(pm_client, [rollout(safe_rollout={"metrics": ["checkout_errors"]})])

    assert response.status_code == 200, response.json()
    second = SafeRollout.objects.get()
    assert second.pk != first.pk and second.experiment.alpha == 0.05 and second.finish_after_hours is None
    first.experiment.refresh_from_db()
    assert first.experiment.status == ExperimentStatus.STOPPED


def test_write__coverage_changed_while_monitoring__refused_naming_coverage(pm_client, guardrails):
    create(pm_client, rollout(safe_rollout=MONITOR))

    response = write_rules(pm_client, [rollout(coverage=0.5, safe_rollout=MONITOR)])

    assert response.status_code == 400
    assert "production rule 1: coverage cannot change" in response.json()["environments"][0]
    assert FeatureRule.objects.get().coverage == 0.2


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            rollout(safe_rollout={"metrics": ["nope"]}),
            "production rule 1: safe_rollout.metrics: there is no metric “nope”.",
        ),
        (rollout(safe_rollout={"metrics": []}), "production rule 1: safe_rollout.metrics: give a list"),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"] * 2}),
            "safe_rollout.metrics: each metric once.",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "alpha": 1.5}),
            "production rule 1: safe_rollout.alpha: must be",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "alpha": True}),
            "safe_rollout.alpha: must be",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "alpha": 0.6}),
            "production rule 1: safe_rollout.alpha: must be a number from 0.0001 to 0.5",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "alpha": 0}),
            "safe_rollout.alpha: must be",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "finish_after_hours": 0}),
            "production rule 1: safe_rollout.finish_after_hours: must be a whole number of hours from 1",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "finish_after_hours": 1.5}),
            "safe_rollout.finish_after_hours: must be a whole number",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "finish_after_hours": 10**20}),
            "production rule 1: safe_rollout.finish_after_hours: must be a whole number of hours from 1 to 8760",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "finish_after_hours": 8761}),
            "safe_rollout.finish_after_hours: must be a whole number of hours from 1 to 8760",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "finish_after_hours": 1e20}),
            "safe_rollout.finish_after_hours: must be a whole number",
        ),
        (
            rollout(safe_rollout={"metrics": ["checkout_errors"], "alfa": 0.1}),
            "production rule 1: safe_rollout: unknown field alfa",
        ),
        (rollout(safe_rollout=["checkout_errors"]), "production rule 1: safe_rollout: expected"),
        (
            {
                "type": "force",
                "condition": {},
                "value": True,
                "safe_rollout": {"metrics": ["checkout_errors"]},
            },
            "production rule 1: safe_rollout: only a rollout rule",
        ),
        (
            rollout(coverage=1, safe_rollout={"metrics": ["checkout_errors"]}),
            "production rule 1: coverage must be between 0 and 1 (exclusive)",
        ),
    ],
)
def test_create__invalid_safe_rollout__400_naming_the_field(pm_client, guardrails, rule, message):
    response = create(pm_client, rule)

    assert response.status_code == 400
    assert message in response.json()["environments"][0]
    assert not SafeRollout.objects.exists() and not FeatureRule.objects.exists()


def test_create__bounds_of_alpha_and_hours__accepted(pm_client, guardrails):
    response = create(
        pm_client,
        rollout(safe_rollout={"metrics": ["checkout_errors"], "alpha": 0.5, "finish_after_hours": 8760}),
    )

    assert response.status_code == 201, response.json()
    safe = SafeRollout.objects.get()
    assert safe.finish_after_hours == 8760 and safe.experiment.alpha == 0.5


@pytest.mark.parametrize(
    ("settings", "field"), [({"finish_after_hours": 10**20}, "finish_after_hours"), ({"alpha": 0.9}, "alpha")]
)
def test_safe_rollout_start__out_of_bounds__validation_error_naming_the_field(guardrails, settings, field):
    # The admin's "Safe rollouts" panel starts monitoring through this service, not the flags API.
    from django.core.exceptions import ValidationError

    from features.safe_rollouts import safe_rollout_start
    from features.services import feature_create

    feature = feature_create(
        user=None,
        key="new_checkout",
        name="New checkout",
        environments={"production": {"rules": [rollout()]}},
    )

    with pytest.raises(ValidationError) as raised:
        safe_rollout_start(rule=feature.rules.get(), metrics=guardrails, **settings)

    assert set(raised.value.message_dict) == {field}
    assert not SafeRollout.objects.exists()


def test_schema__rule_items_describe_safe_rollout(pm_client):
    schema = pm_client.get(reverse("schema"), {"format": "json"}).json()
    environments = schema["components"]["schemas"]["Feature"]["properties"]["environments"]
    rule = environments["additionalProperties"]["properties"]["rules"]["items"]
    assert set(rule["properties"]["safe_rollout"]["properties"]) == {
        "metrics",
        "alpha",
        "finish_after_hours",
        "status",
        "experiment",
        "started_at",
        "decided_at",
        "evidence",
    }
    settings = rule["properties"]["safe_rollout"]["properties"]
    assert (settings["alpha"]["minimum"], settings["alpha"]["maximum"]) == (0.0001, 0.5)
    assert (settings["finish_after_hours"]["minimum"], settings["finish_after_hours"]["maximum"]) == (1, 8760)


def test_config_export__safe_rollout_settings_only__and_a_plan_of_it_is_empty(pm_client, guardrails):
    from features.config_file.export import config_export
    from features.config_file.plan import config_plan

    create(pm_client, rollout(safe_rollout=MONITOR))
    SafeRollout.objects.update(evidence={"guardrails": [], "alpha": 0.02})

    document = config_export()

    rule = next(f for f in document["features"] if f["key"] == "new_checkout")["environments"]["production"][
        "rules"
    ][0]
    assert rule["safe_rollout"] == MONITOR
    assert config_plan(document).changes == ()


def test_protected_environment__safe_rollout_held_then_started_on_approval(guardrails):
    # Given production requires approval and the flag rolls out there without monitoring
    from features.governance.models import ChangeRequest
    from features.models import Environment
    from features.services import feature_create
    from tests.factories import ProductManagerFactory
    from tests.governance.conftest import client_for

    author, reviewer = ProductManagerFactory(username="alice"), ProductManagerFactory(username="bob")
    feature_create(
        user=author,
        key="new_checkout",
        name="New checkout",
        environments={"production": {"enabled": True, "rules": [rollout()]}},
    )
    Environment.objects.filter(key="production").update(requires_approval=True)

    # When monitoring is added, it waits for approval: nothing started
    held = write_rules(client_for(author), [rollout(safe_rollout=MONITOR)])
    assert held.status_code == 202, held.json()
    assert not SafeRollout.objects.exists()
    assert held.json()["diff"][0]["after"]["safe_rollout"] == MONITOR

    # Then approving it starts the safe rollout
    approved = client_for(reviewer).post(
        reverse("changerequest-approve", args=[held.json()["id"]]), {}, format="json"
    )
    assert approved.status_code == 200, approved.json()
    assert ChangeRequest.objects.get().status == "applied"
    safe = SafeRollout.objects.get()
    assert safe.status == SafeRolloutStatus.MONITORING and safe.rule.coverage == 0.2
    assert production_rules(client_for(reviewer))[0]["safe_rollout"]["status"] == "monitoring"
