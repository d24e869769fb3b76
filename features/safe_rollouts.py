"""Safe rollouts: a rollout rule watched by guardrail metrics (docs/analysis.md, "Safe rollouts").

Writes only; the decision is made in the data plane (``analytics.safe_rollouts``, after each results
refresh of the rollout's internal experiment), which calls :func:`safe_rollout_roll_back` or
:func:`safe_rollout_finish` here (features must not import analytics).

A roll-back or a finish writes the rule directly, without asking for approval even in an
approval-protected environment: a roll-back is a safety action that must not wait for a reviewer,
and a finish only completes what was approved when the monitored rollout was set up. Both are
recorded in the rule's history (``history_change_reason``) and in the safe rollout's own history,
whose ``evidence`` holds the guardrails' deltas and p-values the decision was made on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from experiments.models import Engine, Experiment, ExperimentMetric, ExperimentStatus, MetricRole, Variant
from features.models import FeatureRule, RuleType, SafeRollout, SafeRolloutStatus
from metrics.models import Metric

__all__ = [
    "safe_rollout_finish",
    "safe_rollout_roll_back",
    "safe_rollout_rolled_back",
    "safe_rollout_start",
]

# Sent once a roll-back has committed, with ``safe_rollout`` (the SafeRollout, status rolled_back),
# ``rule`` (the FeatureRule, coverage 0) and ``evidence`` (the same dict as ``safe_rollout.evidence``).
# The notification hook: webhooks connect it to their ``safe_rollout.rolled_back`` event.
safe_rollout_rolled_back = Signal()

HISTORY_REASON_LENGTH = 100  # simple_history's history_change_reason column


def experiment_key_for(rule: FeatureRule) -> str:
    return f"safe-rollout-{rule.pk}"


@transaction.atomic
def safe_rollout_start(
    *,
    rule: FeatureRule,
    metrics: Sequence[Metric],
    finish_after_hours: int | None = None,
    alpha: float = 0.05,
    user: AbstractBaseUser | None = None,
    now: dt.datetime | None = None,
) -> SafeRollout:
    """Start monitoring the rollout ``rule`` with the guardrail ``metrics``.

    Creates the internal experiment (running, sequential frequentist engine at ``alpha``, analysing
    the rule's environment; variants ``control`` and ``treatment`` weighted 1 − coverage and coverage
    so its SRM check holds the rollout to its own split). Raises ``ValidationError`` naming the field.
    """
    now = now or timezone.now()
    if rule.type != RuleType.ROLLOUT:
        raise ValidationError({"rule": "Only a rollout rule can be a safe rollout."})
    coverage = rule.coverage or 0.0
    if not 0.0 < coverage < 1.0:
        raise ValidationError(
            {"rule": "The rollout's coverage must be between 0 and 1 (exclusive) to compare."}
        )
    if not metrics:
        raise ValidationError({"metrics": "Give at least one guardrail metric."})
    if finish_after_hours is not None and finish_after_hours <= 0:
        raise ValidationError({"finish_after_hours": "Must be a positive number of hours, or empty."})
    if not 0.0 < alpha < 1.0:
        raise ValidationError({"alpha": "Must be between 0 and 1."})
    if SafeRollout.objects.filter(rule=rule).exists():
        raise ValidationError({"rule": "This rule already has a safe rollout."})
    experiment = Experiment.objects.create(
        key=experiment_key_for(rule),
        name=f"Safe rollout of {rule.feature.key} in {rule.environment.key}",
        description="Internal: created by a safe rollout; its results decide the rollout.",
        status=ExperimentStatus.RUNNING,
        owner=user if user is not None and user.is_authenticated else None,
        engine=Engine.FREQUENTIST,
        alpha=alpha,
        sequential=True,
        analysis_environments=[rule.environment.key],
        started_at=now,
    )
    Variant.objects.create(experiment=experiment, key="control", name="Not rolled out", weight=1.0 - coverage)
    Variant.objects.create(
        experiment=experiment, key="treatment", name="Rolled out", weight=coverage, position=1
    )
    for metric in metrics:
        ExperimentMetric.objects.create(experiment=experiment, metric=metric, role=MetricRole.GUARDRAIL)
    return SafeRollout.objects.create(
        rule=rule, experiment=experiment, finish_after_hours=finish_after_hours, started_at=now
    )


def _decide(
    safe_rollout_id: int, *, status: str, coverage: float, reason: str, evidence: Mapping[str, Any], now
) -> SafeRollout | None:
    """Apply a decision once: None when the rollout is no longer monitoring (decided already)."""
    locked = (
        SafeRollout.objects.select_for_update().select_related("rule", "experiment").get(pk=safe_rollout_id)
    )
    if locked.status != SafeRolloutStatus.MONITORING:
        return None
    rule = locked.rule
    rule.coverage = coverage
    rule._change_reason = reason[:HISTORY_REASON_LENGTH]
    rule.save(update_fields=["coverage"])
    locked.status = status
    locked.decided_at = now
    locked.evidence = dict(evidence)
    locked._change_reason = reason[:HISTORY_REASON_LENGTH]
    locked.save(update_fields=["status", "decided_at", "evidence"])
    experiment = locked.experiment
    experiment.status = ExperimentStatus.STOPPED
    experiment.stopped_at = now
    experiment.decision_variant = "control" if status == SafeRolloutStatus.ROLLED_BACK else "treatment"
    experiment.decision_reason = reason
    experiment.save(
        update_fields=["status", "stopped_at", "decision_variant", "decision_reason", "updated_at"]
    )
    return locked


@transaction.atomic
def safe_rollout_roll_back(
    *, safe_rollout: SafeRollout, evidence: Mapping[str, Any], reason: str, now: dt.datetime | None = None
) -> bool:
    """Roll the rule back (coverage 0) on a guardrail regression; False if already decided.

    ``safe_rollout_rolled_back`` is sent once the transaction commits."""
    decided = _decide(
        safe_rollout.pk,
        status=SafeRolloutStatus.ROLLED_BACK,
        coverage=0.0,
        reason=reason,
        evidence=evidence,
        now=now or timezone.now(),
    )
    if decided is None:
        return False
    transaction.on_commit(
        lambda: safe_rollout_rolled_back.send(
            sender=SafeRollout, safe_rollout=decided, rule=decided.rule, evidence=decided.evidence
        )
    )
    return True


@transaction.atomic
def safe_rollout_finish(
    *, safe_rollout: SafeRollout, evidence: Mapping[str, Any], reason: str, now: dt.datetime | None = None
) -> bool:
    """Finish the rollout (coverage 1) after its time without a regression; False if already decided."""
    decided = _decide(
        safe_rollout.pk,
        status=SafeRolloutStatus.FINISHED,
        coverage=1.0,
        reason=reason,
        evidence=evidence,
        now=now or timezone.now(),
    )
    return decided is not None
