"""Safe rollouts' decision, made after each results refresh (docs/analysis.md, "Safe rollouts").

A safe rollout (``features.models.SafeRollout``) is backed by an internal experiment whose variants
are the matching units outside the rollout (``control``) and inside it (``treatment``). Its results
are refreshed like any experiment's (the schedule, the API, ``manage.py rollup``), with the
sequential frequentist engine: the asymptotic confidence sequence (gbstats), whose p-value stays
valid however often it is looked at. After each refresh :func:`safe_rollout_check` applies
:func:`safe_rollout_decide`:

* **roll back** when any guardrail regressed in the rollout with sequential p-value < α / k
  (k guardrails: Bonferroni, so the chance of any false roll-back over the whole rollout stays
  under α);
* **finish** when ``finish_after_hours`` have passed since the start, no guardrail regressed, the
  split passed its SRM check and both arms have units;
* otherwise keep monitoring.

The writes are the features plane's (``features.safe_rollouts``); this module only decides.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from analytics.results.document import ResultsDocument
from features.models import SafeRollout, SafeRolloutStatus
from features.safe_rollouts import safe_rollout_finish, safe_rollout_roll_back

logger = logging.getLogger(__name__)

ROLL_BACK, FINISH, CONTINUE = "roll_back", "finish", "continue"


@dataclass(frozen=True)
class Decision:
    action: str  # roll_back | finish | continue
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def safe_rollout_decide(
    document: ResultsDocument,
    *,
    alpha: float,
    elapsed_hours: float,
    finish_after_hours: int | None,
) -> Decision:
    """What a safe rollout does given its experiment's latest results (pure; module docstring)."""
    guardrails = [m for m in document.metrics if m.role == "guardrail"]
    threshold = alpha / max(len(guardrails), 1)
    rows: list[dict[str, Any]] = []
    regressed: list[dict[str, Any]] = []
    for metric in guardrails:
        comparison = next((c for c in metric.comparisons if c.variant == "treatment"), None)
        units = {v.variant: v.units for v in metric.variants}
        row: dict[str, Any] = {
            "metric": metric.metric,
            "units": units,
            "relative": comparison.relative.estimate if comparison else None,
            "relative_ci": list(comparison.relative.ci) if comparison and comparison.relative.ci else None,
            "absolute": comparison.absolute.estimate if comparison else None,
            "p_value": comparison.p_value if comparison else None,
            "regressed": False,
            "error": metric.error or (comparison.error if comparison else None),
        }
        if (
            comparison is not None
            and comparison.p_value is not None
            and comparison.absolute.estimate is not None
        ):
            worse = (
                comparison.absolute.estimate < 0
                if metric.higher_is_better
                else comparison.absolute.estimate > 0
            )
            row["regressed"] = bool(worse and comparison.p_value < threshold)
        rows.append(row)
        if row["regressed"]:
            regressed.append(row)
    srm_ok = document.srm.ok if document.srm is not None else True
    evidence = {
        "computed_at": document.computed_at.isoformat() if document.computed_at else None,
        "alpha": alpha,
        "threshold": threshold,
        "srm_ok": srm_ok,
        "srm_p_value": document.srm.p_value if document.srm is not None else None,
        "elapsed_hours": round(elapsed_hours, 3),
        "guardrails": rows,
    }
    if regressed:
        worst = min(regressed, key=lambda r: r["p_value"])
        lift = f"{worst['relative']:+.1%}" if worst["relative"] is not None else "?"
        reason = f"Safe rollout rolled back: {worst['metric']} {lift} (p={worst['p_value']:.3g})"
        return Decision(ROLL_BACK, reason, evidence)
    have_data = bool(guardrails) and all(
        all(row["units"].get(arm, 0) > 0 for arm in ("control", "treatment")) and not row["error"]
        for row in rows
    )
    if finish_after_hours is not None and elapsed_hours >= finish_after_hours and srm_ok and have_data:
        return Decision(FINISH, f"Safe rollout finished: no regression in {finish_after_hours} h", evidence)
    return Decision(CONTINUE, "monitoring", evidence)


def safe_rollout_check(*, experiment_id: int, payload: dict[str, Any], now: dt.datetime) -> Decision | None:
    """Decide the safe rollout behind ``experiment_id``, if any and still monitoring, from ``payload``
    (the results just stored) and apply the decision. Returns it, or None when there is nothing to do."""
    safe_rollout = (
        SafeRollout.objects.select_related("experiment", "rule")
        .filter(experiment_id=experiment_id, status=SafeRolloutStatus.MONITORING)
        .first()
    )
    if safe_rollout is None:
        return None
    elapsed = (now - safe_rollout.started_at).total_seconds() / 3600
    decision = safe_rollout_decide(
        ResultsDocument.from_dict(payload),
        alpha=safe_rollout.experiment.alpha,
        elapsed_hours=elapsed,
        finish_after_hours=safe_rollout.finish_after_hours,
    )
    if decision.action == ROLL_BACK:
        safe_rollout_roll_back(
            safe_rollout=safe_rollout, evidence=decision.evidence, reason=decision.reason, now=now
        )
        logger.warning("%s: %s", safe_rollout.rule, decision.reason)
    elif decision.action == FINISH:
        safe_rollout_finish(
            safe_rollout=safe_rollout, evidence=decision.evidence, reason=decision.reason, now=now
        )
        logger.info("%s: %s", safe_rollout.rule, decision.reason)
    else:  # the latest look, shown on the flag's page
        SafeRollout.objects.filter(pk=safe_rollout.pk).update(evidence=decision.evidence)
    return decision
