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

from experiments.models import (
    Engine,
    Experiment,
    ExperimentMetric,
    ExperimentStatus,
    ManagedBy,
    MetricRole,
    Variant,
)
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
# The internal experiment's alpha bounds (experiments.models.Experiment.alpha's validators).
ALPHA_MIN, ALPHA_MAX = 0.0001, 0.5
# A year: a monitoring meant to finish later than that should never finish by itself (null). Also keeps
# the value inside the database's integer column (a huge number was a 500).
FINISH_AFTER_HOURS_MAX = 8760


def experiment_key_for(rule: FeatureRule) -> str:
    return f"safe-rollout-{rule.pk}"


def safe_rollout_name(rule: FeatureRule) -> str:
    """How its internal experiment names the safe rollout that owns it."""
    return f"of {rule.feature.key} in {rule.environment.key}"


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
    if finish_after_hours is not None and not 0 < finish_after_hours <= FINISH_AFTER_HOURS_MAX:
        raise ValidationError(
            {
                "finish_after_hours": f"Must be a whole number of hours from 1 to {FINISH_AFTER_HOURS_MAX} "
                "(a year), or empty."
            }
        )
    if not ALPHA_MIN <= alpha <= ALPHA_MAX:
        raise ValidationError({"alpha": f"Must be between {ALPHA_MIN:g} and {ALPHA_MAX:g}."})
    if SafeRollout.objects.filter(rule=rule).exists():
        raise ValidationError({"rule": "This rule already has a safe rollout."})
    experiment = Experiment.objects.create(
        key=experiment_key_for(rule),
        name=f"Safe rollout {safe_rollout_name(rule)}",
        description="Internal: created by a safe rollout; its results decide the rollout.",
        status=ExperimentStatus.RUNNING,
        owner=user if user is not None and user.is_authenticated else None,
        engine=Engine.FREQUENTIST,
        alpha=alpha,
        sequential=True,
        analysis_environments=[rule.environment.key],
        started_at=now,
        managed_by=ManagedBy.SAFE_ROLLOUT,
        managed_by_name=safe_rollout_name(rule),
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


# --- a rollout rule's ``safe_rollout`` in the flags API (features.services, docs/api.md) ---------------

SETTINGS_FIELDS = ("metrics", "alpha", "finish_after_hours")
# Shown by the API, accepted back unchanged (a rule read and written back) and ignored.
STATE_FIELDS = ("status", "experiment", "started_at", "decided_at", "evidence")
DEFAULT_ALPHA = 0.05


def safe_rollout_settings(safe_rollout: SafeRollout) -> dict[str, Any]:
    """What a rollout rule's monitoring was set up with: its guardrail metrics (keys), alpha and the
    hours after which it finishes. Part of the flag's configuration (the API, change requests,
    configuration files), so it holds nothing that changes by itself."""
    links = sorted(safe_rollout.experiment.metric_links.all(), key=lambda link: link.pk)
    return {
        "metrics": [link.metric.key for link in links if link.role == MetricRole.GUARDRAIL],
        "alpha": safe_rollout.experiment.alpha,
        "finish_after_hours": safe_rollout.finish_after_hours,
    }


def safe_rollout_state(safe_rollout: SafeRollout) -> dict[str, Any]:
    """What the monitoring is doing (read-only in the API): its status, its internal experiment, when it
    started and was decided, and the evidence of the latest check or of the decision."""
    return {
        "status": safe_rollout.status,
        "experiment": safe_rollout.experiment.key,
        "started_at": safe_rollout.started_at,
        "decided_at": safe_rollout.decided_at,
        "evidence": safe_rollout.evidence,
    }


def safe_rollout_settings_clean(value: Any, *, rule: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    """A rule's ``safe_rollout`` as written to the API, checked: ``{"metrics": [...], "alpha": 0.05,
    "finish_after_hours": 72}`` (alpha and the hours optional; the read-only state fields accepted and
    ignored), or None for a rule without monitoring. Raises ``ValidationError`` on ``environments``
    whose message names the field (``production rule 2: safe_rollout.metrics: ...``)."""
    if value is None:
        return None

    def refuse(field: str, message: str) -> ValidationError:
        return ValidationError({"environments": f"{where}safe_rollout{field}: {message}"})

    if rule.get("type") != RuleType.ROLLOUT:
        raise refuse("", "only a rollout rule can be watched by guardrail metrics.")
    if not isinstance(value, Mapping):
        raise refuse("", 'expected {"metrics": [...], "alpha": 0.05, "finish_after_hours": 72}.')
    unknown = sorted(set(value) - set(SETTINGS_FIELDS) - set(STATE_FIELDS))
    if unknown:
        raise refuse("", f"unknown field {', '.join(unknown)}; known: {', '.join(SETTINGS_FIELDS)}.")
    metrics = value.get("metrics")
    if not isinstance(metrics, list) or not metrics or not all(isinstance(key, str) for key in metrics):
        raise refuse(".metrics", "give a list of at least one guardrail metric key.")
    if len(set(metrics)) != len(metrics):
        raise refuse(".metrics", "each metric once.")
    known = set(Metric.objects.filter(key__in=metrics).values_list("key", flat=True))
    missing = [key for key in metrics if key not in known]
    if missing:
        raise refuse(".metrics", f"there is no metric {', '.join(f'“{key}”' for key in missing)}.")
    alpha = value.get("alpha", DEFAULT_ALPHA)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not ALPHA_MIN <= alpha <= ALPHA_MAX:
        raise refuse(".alpha", f"must be a number from {ALPHA_MIN:g} to {ALPHA_MAX:g}.")
    hours = value.get("finish_after_hours")
    if hours is not None and (
        isinstance(hours, bool) or not isinstance(hours, int) or not 0 < hours <= FINISH_AFTER_HOURS_MAX
    ):
        raise refuse(
            ".finish_after_hours",
            f"must be a whole number of hours from 1 to {FINISH_AFTER_HOURS_MAX} (a year), or null (never).",
        )
    return {"metrics": list(metrics), "alpha": float(alpha), "finish_after_hours": hours}


def _same_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (
        sorted(a["metrics"]) == sorted(b["metrics"])
        and float(a["alpha"]) == float(b["alpha"])
        and a["finish_after_hours"] == b["finish_after_hours"]
    )


# What makes a written rule the same rule as a stored one, besides its safe-rollout settings. Coverage is
# left out: a monitored rule's coverage change is refused on its own (services._write_rules), and a
# rolled-back or finished rule is written back with the coverage its decision set.
RULE_IDENTITY_FIELDS = ("type", "condition", "value", "hash_attribute", "fallback_attribute")


def safe_rollouts_match(
    existing: Sequence[SafeRollout],
    rules: Sequence[Mapping[str, Any]],
    wanted: Sequence[Mapping[str, Any] | None],
) -> list[SafeRollout | None]:
    """Which existing safe rollout of an environment each rule written there keeps: the first one not
    yet taken (in the order of ``existing``) whose rule is the written rule (``RULE_IDENTITY_FIELDS``
    of ``rules``, given as they will be stored) and whose settings are ``wanted``'s. Rules are replaced as
    a list, so a rule written back unchanged keeps its monitoring, its history and its evidence, and never
    takes over another rule's; a changed rule or changed settings start a new one."""
    free = list(existing)
    kept: list[SafeRollout | None] = []
    for rule, settings in zip(rules, wanted, strict=True):
        match = None
        if settings is not None:
            match = next(
                (
                    s
                    for s in free
                    if all(getattr(s.rule, field) == rule[field] for field in RULE_IDENTITY_FIELDS)
                    and _same_settings(safe_rollout_settings(s), settings)
                ),
                None,
            )
            if match is not None:
                free.remove(match)
        kept.append(match)
    return kept


def safe_rollouts_dropped(safe_rollouts: Sequence[SafeRollout], *, now: dt.datetime | None = None) -> None:
    """Stop the internal experiments of safe rollouts whose rules a write removed (their rows go with
    the rules): a monitoring that no longer watches a rule must not keep being refreshed."""
    now = now or timezone.now()
    for safe_rollout in safe_rollouts:
        if safe_rollout.status != SafeRolloutStatus.MONITORING:
            continue
        Experiment.objects.filter(pk=safe_rollout.experiment_id, status=ExperimentStatus.RUNNING).update(
            status=ExperimentStatus.STOPPED,
            stopped_at=now,
            decision_reason="Safe rollout removed with its rule",
            updated_at=now,
        )
