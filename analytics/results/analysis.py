"""The Results document (docs/api.md, "Results"): the statistics engine over a roll-up's sums.

Pure: a :class:`~analytics.rollup.refresh.Rollup` and the analysis plan in, a
:class:`~analytics.results.document.ResultsDocument` out, so the numbers can be checked against
independent computations without ClickHouse or a database. The engine (``analytics.stats``) answers
in JSON-shaped dicts, which are adjusted here, then read once as the typed document.

What it adds to the engine's per-metric output:

* SRM: chi-square of units per variant against the configured weights (``srm_check``);
* ``p_value_adjusted``: Holm or Benjamini–Hochberg across every primary and secondary comparison of
  the experiment; guardrails keep their raw p-value. Under the frequentist engine ``significant`` then
  means "adjusted p-value below alpha" (the intervals stay unadjusted, as GrowthBook shows them);
* guardrails: a guardrail that moved significantly in its bad direction has ``guardrail_violated``
  true and a top-level warning;
* ``timeseries``: for the metrics rolled up per day, each day's cumulative comparison (no
  multiple-testing adjustment on daily points).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from analytics.results.document import ResultsDocument
from analytics.rollup.refresh import Rollup
from analytics.stats import AnalysisOptions, adjust_p_values, analyse_metric, srm_check, summarise_variants

logger = logging.getLogger(__name__)

ROLES_ADJUSTED = ("primary", "secondary")


@dataclass(frozen=True)
class MetricAnalysis:
    """How to analyse and report one metric of the experiment (its role and the engine's options)."""

    key: str
    name: str
    role: str  # primary | secondary | guardrail
    type: str  # binomial | count | sum | ratio
    options: AnalysisOptions


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _decide(comparison: dict[str, Any], options: AnalysisOptions) -> None:
    """Significance from the adjusted p-value (frequentist), and the direction that follows from it."""
    if options.engine != "frequentist" or comparison["p_value_adjusted"] is None:
        return
    significant = comparison["p_value_adjusted"] < options.alpha
    comparison["significant"] = significant
    if not significant:
        comparison["direction"] = "inconclusive"


def _metric_block(metric: MetricAnalysis, rollup: Rollup) -> dict[str, Any]:
    variants = rollup.totals[metric.key]
    block: dict[str, Any] = {
        "metric": metric.key,
        "name": metric.name,
        "type": metric.type,
        "role": metric.role,
        "higher_is_better": metric.options.higher_is_better,
        "cuped": metric.options.cuped,
        "variants": summarise_variants(variants),
        "comparisons": analyse_metric(variants, metric.options),
        "error": None,
        "cap_used": rollup.caps_used.get(metric.key),
    }
    for comparison in block["comparisons"]:
        comparison["guardrail_violated"] = None
    return block


def _timeseries_block(metric: MetricAnalysis, rollup: Rollup) -> dict[str, Any]:
    points = []
    for day in rollup.daily.get(metric.key, []):
        comparisons = analyse_metric(day.variants, metric.options)
        for comparison in comparisons:
            comparison.pop("p_value_adjusted", None)
        points.append(
            {"date": _iso(day.date), "variants": summarise_variants(day.variants), "comparisons": comparisons}
        )
    return {"metric": metric.key, "role": metric.role, "points": points}


def results_document(
    *,
    experiment: str,
    rollup: Rollup,
    metrics: Sequence[MetricAnalysis],
    weights: Sequence[float],
    srm_threshold: float,
    correction: str,
    computed_at: dt.datetime,
) -> ResultsDocument:
    """The Results document of one experiment from its roll-up (see the module docstring).

    ``metrics`` in the experiment's order; ``weights`` per variant in the roll-up's variant order.
    Numbers are full double precision; fields that do not apply are None.
    """
    variants = list(rollup.spec.variants)
    units = [rollup.units[v] for v in variants]
    srm = srm_check(units, list(weights), srm_threshold)
    warnings: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []

    blocks: list[dict[str, Any]] = []
    for metric in metrics:
        try:
            blocks.append(_metric_block(metric, rollup))
        except (ValueError, ArithmeticError) as exc:  # the engine refused the sums: report, go on
            logger.warning("Experiment %s, metric %s: %s", experiment, metric.key, exc)
            errors.append({"metric": metric.key, "error": str(exc)})
            blocks.append(
                {"metric": metric.key, "name": metric.name, "type": metric.type, "role": metric.role,
                 "higher_is_better": metric.options.higher_is_better, "cuped": metric.options.cuped,
                 "variants": [], "comparisons": [], "error": str(exc),
                 "cap_used": rollup.caps_used.get(metric.key)}
            )  # fmt: skip

    # Multiple testing: one family, every primary and secondary comparison of the experiment.
    family = [c for b in blocks if b["role"] in ROLES_ADJUSTED for c in b["comparisons"]]
    for comparison, adjusted in zip(
        family, adjust_p_values([c["p_value"] for c in family], correction), strict=True
    ):
        comparison["p_value_adjusted"] = adjusted
    options = {metric.key: metric.options for metric in metrics}
    for block in blocks:
        for comparison in block["comparisons"]:
            if block["role"] in ROLES_ADJUSTED:
                _decide(comparison, options[block["metric"]])
            else:
                comparison["p_value_adjusted"] = comparison["p_value"]
            if block["role"] == "guardrail":
                violated = bool(comparison["significant"] and comparison["direction"] == "regressed")
                comparison["guardrail_violated"] = violated
                if violated:
                    warnings.append(
                        {
                            "code": "guardrail_violated",
                            "metric": block["metric"],
                            "variant": comparison["variant"],
                            "message": f"Guardrail {block['metric']} got significantly worse in "
                            f"{comparison['variant']} compared with {comparison['baseline']}.",
                        }
                    )

    if not srm["ok"]:
        warnings.insert(
            0,
            {
                "code": "sample_ratio_mismatch",
                "message": f"Units per variant do not match the configured weights (p = {srm['p_value']:.3g} "
                f"< {srm_threshold:g}); the assignment or the exposure logging is broken, so results "
                "cannot be trusted.",
            },
        )
    total_units = sum(units)
    if rollup.multiple_exposures:
        share = rollup.multiple_exposures / (total_units + rollup.multiple_exposures)
        warnings.append(
            {
                "code": "multiple_exposures",
                "message": f"{rollup.multiple_exposures} units saw more than one variant ({share:.2%}) and "
                "were left out.",
            }
        )
    if rollup.unknown_variant_units:
        warnings.append(
            {
                "code": "unknown_variant",
                "message": f"{rollup.unknown_variant_units} units were exposed to a variant this experiment "
                "does not have and were left out.",
            }
        )

    return ResultsDocument.from_dict(
        {
            "experiment": experiment,
            "computed_at": _iso(computed_at),
            "srm": {
                "p_value": srm["p_value"],
                "units": dict(zip(variants, units, strict=True)),
                "ok": srm["ok"],
                "threshold": srm_threshold,
                "weights": dict(zip(variants, (float(w) for w in weights), strict=True)),
            },
            "units": {
                "total": total_units,
                "variants": dict(zip(variants, units, strict=True)),
                "multiple_exposures": rollup.multiple_exposures,
                "unknown_variant": rollup.unknown_variant_units,
            },
            "multiple_exposures": rollup.multiple_exposures,
            "analysis": {
                "from": _iso(rollup.first_exposure_at),
                "until": _iso(rollup.spec.until),
                "correction": correction,
            },
            "data": {
                "first_exposure_at": _iso(rollup.first_exposure_at),
                "last_exposure_at": _iso(rollup.last_exposure_at),
                "last_event_at": _iso(rollup.last_event_at),
            },
            "metrics": blocks,
            "timeseries": [_timeseries_block(m, rollup) for m in metrics if m.key in rollup.daily],
            "warnings": warnings,
            "errors": errors,
        }
    )
