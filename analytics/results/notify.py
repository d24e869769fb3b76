"""Webhook events from a results refresh: told once, when something becomes true.

After each refresh the new document is compared with the one it replaces, and an event goes out only
for what was not so before: a primary metric's comparison that became significant
(``results.significant``), a guardrail comparison that became violated
(``results.guardrail_violated``), the sample ratio check that started failing
(``results.sample_ratio_mismatch``). A refresh that finds the same state again says nothing, so a
receiver is not told the same news every 15 minutes.
"""

from __future__ import annotations

from typing import Any

from analytics.results.document import Comparison, MetricResult, ResultsDocument
from experiments.models import Experiment, MetricRole
from features.webhooks.models import EventType
from features.webhooks.services import event_emit


def _comparisons(
    document: ResultsDocument, role: str
) -> dict[tuple[str, str], tuple[MetricResult, Comparison]]:
    return {
        (metric.metric, comparison.variant): (metric, comparison)
        for metric in document.metrics
        if metric.role == role
        for comparison in metric.comparisons
    }


def _comparison_data(metric: MetricResult, comparison: Comparison) -> dict[str, Any]:
    return {
        "metric": metric.metric,
        "role": metric.role,
        "variant": comparison.variant,
        "baseline": comparison.baseline,
        "direction": comparison.direction,
        "relative": comparison.relative.to_dict(),
        "p_value": comparison.p_value,
        "p_value_adjusted": comparison.p_value_adjusted,
        "chance_to_win": comparison.chance_to_win,
    }


def results_events_emit(
    *, experiment: Experiment, previous: ResultsDocument, current: ResultsDocument
) -> None:
    """Send the webhook events of what ``current`` shows and ``previous`` did not."""
    base = {
        "experiment": {"key": experiment.key, "name": experiment.name},
        "computed_at": current.computed_at,
    }
    before = _comparisons(previous, MetricRole.PRIMARY)
    for key, (metric, comparison) in _comparisons(current, MetricRole.PRIMARY).items():
        old = before.get(key)
        if comparison.significant and not (old is not None and old[1].significant):
            event_emit(EventType.RESULTS_SIGNIFICANT, {**base, **_comparison_data(metric, comparison)})
    before = _comparisons(previous, MetricRole.GUARDRAIL)
    for key, (metric, comparison) in _comparisons(current, MetricRole.GUARDRAIL).items():
        old = before.get(key)
        if comparison.guardrail_violated and not (old is not None and old[1].guardrail_violated):
            event_emit(EventType.GUARDRAIL_VIOLATED, {**base, **_comparison_data(metric, comparison)})
    if current.srm_failed and not previous.srm_failed:
        srm = current.srm
        event_emit(
            EventType.SAMPLE_RATIO_MISMATCH,
            {
                **base,
                "p_value": srm.p_value,
                "threshold": srm.threshold,
                "units": dict(srm.units),
                "weights": dict(srm.weights),
            },
        )
