"""Safe rollouts: the decision rule, the end-to-end roll-back and finish through a real refresh (chDB),
and simulations of the rule's power and false roll-back rate with the same engine."""

import datetime as dt
import json

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from analytics.results.analysis import MetricAnalysis, results_document
from analytics.results.document import ResultsDocument
from analytics.results.services import experiment_results_refresh
from analytics.rollup import Measure, MetricSpec, Rollup, RollupSpec
from analytics.safe_rollouts import CONTINUE, FINISH, ROLL_BACK, safe_rollout_decide
from analytics.stats import AnalysisOptions, SampleStats
from experiments.models import ExperimentStatus
from features.config import config_compile, snapshot_build
from features.evaluation import evaluate_feature
from features.models import Environment, FeatureRule, SafeRolloutStatus
from features.safe_rollouts import safe_rollout_rolled_back, safe_rollout_start
from features.webhooks.models import EventType, Webhook, WebhookDelivery
from metrics.models import MetricType
from tests.analytics.test_rollup import Event, Exposure, write
from tests.factories import FeatureEnvironmentFactory, FeatureFactory, FeatureRuleFactory, MetricFactory

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


# --- the decision rule ----------------------------------------------------------------------------------
def guardrail(key, *, relative, absolute, p_value, higher_is_better=False, units=(1000, 1000), error=None):
    return {
        "metric": key,
        "role": "guardrail",
        "higher_is_better": higher_is_better,
        "variants": [{"variant": "control", "units": units[0]}, {"variant": "treatment", "units": units[1]}],
        "comparisons": [
            {
                "variant": "treatment",
                "relative": {"estimate": relative, "ci": [relative - 0.01, relative + 0.01]},
                "absolute": {"estimate": absolute, "ci": None},
                "p_value": p_value,
                "error": error,
            }
        ],
    }


def doc(*metrics, srm_ok=True):
    return ResultsDocument.from_dict(
        {
            "experiment": "safe-rollout-1",
            "computed_at": NOW.isoformat(),
            "srm": {"ok": srm_ok, "p_value": 0.5},
            "metrics": list(metrics),
        }  # fmt: skip
    )


def test_decide__regression_below_alpha__rolls_back_with_evidence():
    decision = safe_rollout_decide(
        doc(guardrail("errors", relative=0.06, absolute=0.006, p_value=0.001)),
        alpha=0.05,
        elapsed_hours=1,
        finish_after_hours=24,
    )
    assert decision.action == ROLL_BACK
    assert decision.reason == "Safe rollout rolled back: errors +6.0% (p=0.001)"
    row = decision.evidence["guardrails"][0]
    assert row["regressed"] is True and row["relative"] == 0.06 and row["p_value"] == 0.001
    assert row["units"] == {"control": 1000, "treatment": 1000}


def test_decide__significant_improvement__not_a_regression():
    decision = safe_rollout_decide(
        doc(guardrail("errors", relative=-0.06, absolute=-0.006, p_value=0.001)),
        alpha=0.05,
        elapsed_hours=1,
        finish_after_hours=None,
    )
    assert decision.action == CONTINUE


def test_decide__higher_is_better_drop__rolls_back():
    decision = safe_rollout_decide(
        doc(guardrail("revenue", relative=-0.05, absolute=-1.0, p_value=0.01, higher_is_better=True)),
        alpha=0.05,
        elapsed_hours=1,
        finish_after_hours=None,
    )
    assert decision.action == ROLL_BACK


def test_decide__two_guardrails__bonferroni_threshold_alpha_over_k():
    metrics = (
        guardrail("errors", relative=0.03, absolute=0.003, p_value=0.03),
        guardrail("latency", relative=0.0, absolute=0.0, p_value=0.9),
    )
    decision = safe_rollout_decide(doc(*metrics), alpha=0.05, elapsed_hours=1, finish_after_hours=None)
    assert decision.action == CONTINUE and decision.evidence["threshold"] == 0.025
    one = safe_rollout_decide(doc(metrics[0]), alpha=0.05, elapsed_hours=1, finish_after_hours=None)
    assert one.action == ROLL_BACK


@pytest.mark.parametrize(
    ("elapsed", "srm_ok", "units", "expected"),
    [
        (24.0, True, (1000, 1000), FINISH),
        (23.9, True, (1000, 1000), CONTINUE),
        (48.0, False, (1000, 1000), CONTINUE),  # a broken split decides nothing
        (48.0, True, (1000, 0), CONTINUE),  # nobody in the rollout: nothing was watched
    ],
)
def test_decide__finish__after_the_time_with_a_healthy_split_only(elapsed, srm_ok, units, expected):
    document = doc(
        guardrail("errors", relative=0.01, absolute=0.001, p_value=0.4, units=units), srm_ok=srm_ok
    )
    decision = safe_rollout_decide(document, alpha=0.05, elapsed_hours=elapsed, finish_after_hours=24)
    assert decision.action == expected


def test_decide__no_finish_time__keeps_monitoring():
    document = doc(guardrail("errors", relative=0.0, absolute=0.0, p_value=0.9))
    assert (
        safe_rollout_decide(document, alpha=0.05, elapsed_hours=1e6, finish_after_hours=None).action
        == CONTINUE
    )


# --- starting one ---------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [({"type": "force"}, "rule"), ({"coverage": 1.0}, "rule"), ({"coverage": 0.0}, "rule")],
)
def test_safe_rollout_start__not_a_partial_rollout__refused_naming_the_field(fields, field):
    rule = FeatureRuleFactory(**{"type": "rollout", "coverage": 0.5, **fields})
    with pytest.raises(ValidationError) as caught:
        safe_rollout_start(rule=rule, metrics=[MetricFactory()])
    assert field in caught.value.message_dict


@pytest.mark.django_db
def test_safe_rollout_start__creates_the_internal_experiment_and_monitors_evaluation():
    rule = FeatureRuleFactory(type="rollout", coverage=0.3, value=True)
    FeatureEnvironmentFactory(feature=rule.feature, environment=rule.environment, enabled=True)
    safe = safe_rollout_start(rule=rule, metrics=[MetricFactory()], finish_after_hours=24)
    experiment = safe.experiment
    assert experiment.key == f"safe-rollout-{rule.pk}" and experiment.status == ExperimentStatus.RUNNING
    assert experiment.sequential is True and experiment.analysis_environments == ["production"]
    assert [(v.key, v.weight) for v in experiment.variants.all()] == [
        ("control", pytest.approx(0.7)),
        ("treatment", 0.3),
    ]
    config = config_compile(snapshot_build(rule.environment_id))
    arms = {}
    for i in range(400):
        evaluation = evaluate_feature(config, rule.feature.key, f"u{i}", {})
        assert evaluation.exposures in (
            ((experiment.key, "treatment", "id"),),
            ((experiment.key, "control", "id"),),
        )
        arms[evaluation.exposures[0][1]] = arms.get(evaluation.exposures[0][1], 0) + 1
        assert evaluation.value is (evaluation.exposures[0][1] == "treatment")
    assert 80 < arms["treatment"] < 160  # about 30% of 400


# --- end to end: flag evaluation, exposures in chDB, the refresh decides ----------------------------------
T0 = timezone.now().replace(microsecond=0) - dt.timedelta(days=3)


def monitored_rollout(*, finish_after_hours):
    feature = FeatureFactory(key="new_checkout")
    production = Environment.objects.get(key="production")
    FeatureEnvironmentFactory(feature=feature, environment=production, enabled=True)
    rule = FeatureRuleFactory(
        feature=feature, environment=production, type="rollout", coverage=0.5, value=True
    )
    metric = MetricFactory(
        key="checkout_errors", type=MetricType.BINOMIAL, event="error", higher_is_better=False
    )
    safe = safe_rollout_start(
        rule=rule, metrics=[metric], finish_after_hours=finish_after_hours, now=T0 - dt.timedelta(hours=1)
    )
    return rule, safe


def serve(rule, *, units: int, error_every: dict[str, int]) -> None:
    """Evaluate the flag for ``units`` users as the decision plane does, log their exposures, and
    record an error event for every ``error_every[arm]``-th unit of each arm."""
    config = config_compile(snapshot_build(rule.environment_id))
    exposures, events, seen = [], [], {"control": 0, "treatment": 0}
    for i in range(units):
        unit = f"user-{i}"
        for experiment, arm, _ in evaluate_feature(config, rule.feature.key, unit, {}).exposures:
            exposures.append(Exposure(unit, arm, T0, experiment=experiment))
            seen[arm] += 1
            if seen[arm] % error_every[arm] == 0:
                events.append(Event(unit, "error", T0 + dt.timedelta(hours=1)))
    write(exposures, events)


@pytest.mark.django_db
def test_refresh__planted_regression__rolls_the_rule_back_with_history_and_signal(
    clickhouse, django_capture_on_commit_callbacks
):
    rule, safe = monitored_rollout(finish_after_hours=None)
    serve(rule, units=3000, error_every={"control": 10, "treatment": 5})  # 10% errors, 20% in the rollout
    hook = Webhook.objects.create(
        name="ops", url="http://127.0.0.1:8429/none", event_types=[EventType.SAFE_ROLLOUT_ROLLED_BACK]
    )
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    safe_rollout_rolled_back.connect(receiver, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            experiment_results_refresh(experiment_id=safe.experiment_id, refreshed_by="test")
    finally:
        safe_rollout_rolled_back.disconnect(receiver)

    rule.refresh_from_db()
    safe.refresh_from_db()
    assert rule.coverage == 0.0
    assert safe.status == SafeRolloutStatus.ROLLED_BACK and safe.decided_at is not None
    row = safe.evidence["guardrails"][0]
    assert row["metric"] == "checkout_errors" and row["regressed"] is True
    assert row["relative"] == pytest.approx(1.0, abs=0.05) and row["p_value"] < 0.05
    latest = rule.history.order_by("-history_id").first()
    assert latest.coverage == 0.0 and latest.history_change_reason.startswith(
        "Safe rollout rolled back: checkout_errors +"
    )
    assert safe.history.order_by("-history_id").first().evidence == safe.evidence
    assert len(received) == 1 and received[0]["rule"].pk == rule.pk
    assert received[0]["evidence"] == safe.evidence
    safe.experiment.refresh_from_db()
    assert safe.experiment.status == ExperimentStatus.STOPPED
    # And a subscribed webhook gets the safe_rollout.rolled_back event with the evidence
    [delivery] = WebhookDelivery.objects.filter(webhook=hook)
    body = json.loads(delivery.body)
    assert body["type"] == "safe_rollout.rolled_back"
    assert body["data"]["safe_rollout"]["feature"] == "new_checkout"
    assert body["data"]["safe_rollout"]["coverage"] == 0.0
    assert body["data"]["evidence"]["guardrails"][0]["metric"] == "checkout_errors"
    # The rolled-back rule no longer logs exposures nor serves anyone.
    config = config_compile(snapshot_build(rule.environment_id))
    evaluation = evaluate_feature(config, rule.feature.key, "user-1", {})
    assert evaluation.value is False and evaluation.exposures == ()


@pytest.mark.django_db
def test_refresh__no_regression_after_the_configured_time__finishes_the_rollout(clickhouse):
    rule, safe = monitored_rollout(finish_after_hours=24)
    serve(rule, units=2000, error_every={"control": 10, "treatment": 10})

    experiment_results_refresh(experiment_id=safe.experiment_id, refreshed_by="test")

    rule.refresh_from_db()
    safe.refresh_from_db()
    assert safe.status == SafeRolloutStatus.FINISHED and rule.coverage == 1.0
    assert rule.history.order_by("-history_id").first().history_change_reason == (
        "Safe rollout finished: no regression in 24 h"
    )
    assert safe.evidence["guardrails"][0]["regressed"] is False


@pytest.mark.django_db
def test_refresh__no_regression_before_the_time__keeps_monitoring_and_records_the_look(clickhouse):
    rule, safe = monitored_rollout(finish_after_hours=24 * 30)
    serve(rule, units=2000, error_every={"control": 10, "treatment": 10})

    experiment_results_refresh(experiment_id=safe.experiment_id, refreshed_by="test")

    rule.refresh_from_db()
    safe.refresh_from_db()
    assert safe.status == SafeRolloutStatus.MONITORING and rule.coverage == 0.5
    assert safe.evidence["guardrails"][0]["units"]["treatment"] > 0
    assert FeatureRule.objects.get(pk=rule.pk).history.count() == 1


# --- simulations: power and false roll-backs of the rule, with the same engine ----------------------------
LOOKS = 10


def simulated_rollout(rng, *, base: float, lift: float, per_look: int) -> str:
    """One rollout of a binomial guardrail (lower is better), looked at ``LOOKS`` times: each look
    adds ``per_look`` units per arm, the document is made by the results' own code path
    (``results_document``, sequential engine) and decided by ``safe_rollout_decide``."""
    spec = RollupSpec(
        experiment="safe", variants=("control", "treatment"), until=NOW,
        metrics=(MetricSpec("errors", "binomial", Measure("error", "binomial")),),
    )  # fmt: skip
    options = AnalysisOptions(alpha=0.05, sequential=True, higher_is_better=False, binomial=True)
    plan = [MetricAnalysis(key="errors", name="Errors", role="guardrail", type="binomial", options=options)]
    counts = {"control": 0, "treatment": 0}
    for look in range(1, LOOKS + 1):
        counts["control"] += int(rng.binomial(per_look, base))
        counts["treatment"] += int(rng.binomial(per_look, base * (1 + lift)))
        n = per_look * look
        totals = {
            "errors": [(arm, SampleStats(n, counts[arm], counts[arm])) for arm in ("control", "treatment")]
        }
        rollup = Rollup(spec=spec, units={"control": n, "treatment": n}, multiple_exposures=0,
                        unknown_variant_units=0, first_exposure_at=None, last_exposure_at=None,
                        last_event_at=None, totals=totals)  # fmt: skip
        document = results_document(experiment="safe", rollup=rollup, metrics=plan, weights=[1.0, 1.0],
                                     srm_threshold=0.001, correction="none", computed_at=NOW)  # fmt: skip
        decision = safe_rollout_decide(document, alpha=0.05, elapsed_hours=look, finish_after_hours=None)
        if decision.action == ROLL_BACK:
            return ROLL_BACK
    return CONTINUE


@pytest.mark.slow
def test_simulation__planted_5_percent_regression__rolled_back_in_at_least_80_percent_of_runs():
    rng = np.random.default_rng(20261207)
    runs = 500
    rolled = sum(
        simulated_rollout(rng, base=0.10, lift=0.05, per_look=25_000) == ROLL_BACK for _ in range(runs)
    )
    print(f"planted 5% regression: rolled back in {rolled}/{runs} runs")
    assert rolled / runs >= 0.80


@pytest.mark.slow
def test_simulation__a_a__rolled_back_no_more_than_alpha_across_10_looks():
    rng = np.random.default_rng(7)
    runs = 2000
    rolled = sum(
        simulated_rollout(rng, base=0.10, lift=0.0, per_look=25_000) == ROLL_BACK for _ in range(runs)
    )
    print(f"A/A: rolled back in {rolled}/{runs} runs over {LOOKS} looks")
    # α = 0.05 one-sided use of a two-sided α sequence: at most α, with room for Monte Carlo error.
    assert rolled / runs <= 0.05
