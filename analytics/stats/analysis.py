"""One metric's results: every variant compared with the first (the control), as docs/analysis.md describes.

This is the engine's entry point for the roll-up: per-variant sufficient statistics in, the
``variants`` and ``comparisons`` blocks of the results document out, as plain JSON-ready values
(Python floats at full double precision, never NaN or infinity, None where a field does not apply
or cannot be computed).

Degenerate input does not raise. When a variant has fewer than 2 units, a metric that does not
vary, or sums too large to compute with (infinite or not a number), every estimate of that comparison
is None and ``error`` says why (``too_few_units``, ``zero_variance``, ``non_finite``); when the baseline mean is 0 the relative lift (and so ``p_value``, chance to
win and risk) is None with ``baseline_zero`` while the absolute difference is still reported.
GrowthBook returns zeros in these cases; None keeps "no answer" apart from "no effect".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from analytics.stats.bayesian import GaussianPrior, bayesian_test
from analytics.stats.direction import change_direction, is_significant
from analytics.stats.frequentist import DEFAULT_SEQUENTIAL_TUNING, EstimateInterval, frequentist_test
from analytics.stats.moments import effect_moments
from analytics.stats.quantile import QuantileClusteredStats, QuantileStats
from analytics.stats.statistics import MetricStats, unadjusted_mean

Engine = Literal["frequentist", "bayesian"]


@dataclass(frozen=True)
class AnalysisOptions:
    """How to analyse one metric of one experiment (from the Experiment and Metric settings).

    ``binomial``: the metric's ``type`` is ``binomial`` (variance p(1 − p)). ``cuped``: the metric's
    ``cuped`` flag; the statistics must then be ``CupedStats`` / ``RatioCupedStats``. Ratio metrics
    are recognised from their ``RatioStats``; their numerator and denominator always use sample
    variances (``binomial`` is ignored for them, where gbstats would use p(1 − p) for a binomial
    denominator: a factor (n − 1)/n apart). ``prior``: a proper prior on the relative lift for the
    Bayesian engine; None is the improper flat prior.
    """

    engine: Engine = "frequentist"
    alpha: float = 0.05
    sequential: bool = False
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING
    prior: GaussianPrior | None = None
    higher_is_better: bool = True
    cuped: bool = False
    binomial: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ("frequentist", "bayesian"):
            raise ValueError(f"Unknown engine {self.engine!r}; expected 'frequentist' or 'bayesian'.")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be between 0 and 1.")
        if not self.sequential_tuning > 0:
            raise ValueError("sequential_tuning must be positive.")


def _number(value: float | None) -> float | None:
    """A plain, finite Python float, or None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _interval(lo: float | None, hi: float | None) -> list[float] | None:
    lo, hi = _number(lo), _number(hi)
    return None if lo is None or hi is None else [lo, hi]


def _block(estimate: float | None, ci: Sequence[float] | None) -> dict[str, Any]:
    if estimate is None or ci is None:
        return {"estimate": None, "ci": None}
    return {"estimate": _number(estimate), "ci": _interval(ci[0], ci[1])}


def _estimate_ci(result: EstimateInterval | None) -> tuple[float | None, Sequence[float] | None]:
    return (result.estimate, result.ci) if result is not None else (None, None)


def _units(stats: MetricStats) -> int:
    """The variant's units: n, except for an event quantile, whose n counts events."""
    return int(stats.units if isinstance(stats, QuantileClusteredStats) else stats.n)


def quantile_summary(stats: QuantileStats) -> dict[str, Any]:
    """The ``quantile_stats`` block: the summary a quantile comparison was computed from."""
    return {
        "n": int(stats.n),
        "n_star": int(stats.n_star),
        "estimate": _number(stats.estimate) if stats.n > 0 else None,
        "lower": _number(stats.lower) if stats.n > 0 else None,
        "upper": _number(stats.upper) if stats.n > 0 else None,
    }


def summarise_variants(variants: Sequence[tuple[str, MetricStats]]) -> list[dict[str, Any]]:
    """The ``variants`` block: ``{"variant", "units", "mean"}`` with the unadjusted mean (for a
    quantile metric: the quantile, and its ``quantile_stats``)."""
    blocks: list[dict[str, Any]] = []
    for key, stats in variants:
        block = {"variant": key, "units": _units(stats), "mean": _number(unadjusted_mean(stats))}
        if isinstance(stats, QuantileStats):
            block["quantile_stats"] = quantile_summary(stats)
        blocks.append(block)
    return blocks


def compare(
    baseline: tuple[str, MetricStats],
    variant: tuple[str, MetricStats],
    options: AnalysisOptions | None = None,
) -> dict[str, Any]:
    """One comparison dict of the results' ``comparisons`` list.

    Keys: ``variant``, ``baseline``, ``relative`` and ``absolute`` (``{"estimate", "ci"}``),
    ``p_value`` (relative-lift test; None under Bayesian), ``p_value_adjusted`` (= ``p_value``;
    overwrite with :func:`analytics.stats.corrections.adjust_p_values` across the experiment),
    ``significant`` (the relative interval excludes 0, or the absolute one when the relative lift is
    undefined), ``direction`` (``improved`` / ``regressed`` / ``inconclusive`` given
    ``higher_is_better``), ``chance_to_win`` and ``risk`` (Bayesian only), ``error``.
    """
    options = options or AnalysisOptions()
    (baseline_key, control), (variant_key, treatment) = baseline, variant
    moments = effect_moments(control, treatment, binomial=options.binomial, cuped=options.cuped)

    p_value = chance = risk = None
    if options.engine == "frequentist":
        result = frequentist_test(
            moments,
            alpha=options.alpha,
            sequential=options.sequential,
            sequential_tuning=options.sequential_tuning,
        )
        relative = _block(*_estimate_ci(result.relative))
        absolute = _block(*_estimate_ci(result.absolute))
        p_value = _number(result.relative.p_value) if result.relative else None
    else:
        posterior = bayesian_test(
            moments, alpha=options.alpha, prior=options.prior, higher_is_better=options.higher_is_better
        )
        rel, abs_ = posterior.relative, posterior.absolute
        relative = _block(*((rel.mean, rel.ci) if rel else (None, None)))
        absolute = _block(*((abs_.mean, abs_.ci) if abs_ else (None, None)))
        chance = _number(posterior.chance_to_win)
        if posterior.risk is not None:
            risk = _interval(*posterior.risk)

    deciding_ci = relative["ci"] if relative["ci"] is not None else absolute["ci"]
    return {
        "variant": variant_key,
        "baseline": baseline_key,
        "relative": relative,
        "absolute": absolute,
        "p_value": p_value,
        "p_value_adjusted": p_value,
        "significant": is_significant(deciding_ci),
        "direction": change_direction(deciding_ci, higher_is_better=options.higher_is_better),
        "chance_to_win": chance,
        "risk": risk,
        "error": moments.error,
    }


def analyse_metric(
    variants: Sequence[tuple[str, MetricStats]], options: AnalysisOptions | None = None
) -> list[dict[str, Any]]:
    """Compare every variant after the first with the first (the control).

    ``variants``: ``(variant_key, stats)`` in the experiment's order, all of one kind
    (``SampleStats``, ``CupedStats``, ``RatioStats`` or ``RatioCupedStats``). CUPED's θ is estimated
    for each comparison from the control and that variant pooled.
    """
    if not variants:
        return []
    control = variants[0]
    return [compare(control, variant, options) for variant in variants[1:]]
