"""Sample ratio mismatch: do the units per variant match the configured weights?"""

from __future__ import annotations

from collections.abc import Sequence

from scipy import stats as scipy_stats

DEFAULT_SRM_THRESHOLD = 0.001


def srm_p_value(units: Sequence[int], weights: Sequence[float]) -> float:
    """Chi-square goodness-of-fit p-value of units per variant against relative weights.

    χ² = Σ (oᵢ − eᵢ)² / eᵢ with eᵢ = N·wᵢ/Σw, df = k − 1 (gbstats ``check_srm``). Differences from
    gbstats, where it has no answer: no units at all gives 1.0; a variant with weight 0 is left out
    of the test (and of df) when it has no units, and any unit in it is a certain mismatch (0.0).
    """
    if len(units) != len(weights):
        raise ValueError("units and weights must have one entry per variant")
    if any(w < 0 for w in weights) or any(u < 0 for u in units):
        raise ValueError("units and weights must be non-negative")
    total_units = sum(units)
    if total_units == 0:
        return 1.0
    if any(u > 0 and w == 0 for u, w in zip(units, weights, strict=True)):
        return 0.0
    pairs = [(u, w) for u, w in zip(units, weights, strict=True) if w > 0]
    if len(pairs) < 2:
        return 1.0
    # Scaled by the largest weight first, so huge weights (1e308 each) cannot overflow the sum.
    largest = max(w for _, w in pairs)
    pairs = [(u, w / largest) for u, w in pairs]
    total_weight = sum(w for _, w in pairs)
    statistic = 0.0
    for observed, weight in pairs:
        expected = total_units * weight / total_weight
        statistic += (observed - expected) ** 2 / expected
    return float(scipy_stats.chi2.sf(statistic, len(pairs) - 1))


def srm_check(
    units: Sequence[int], weights: Sequence[float], threshold: float = DEFAULT_SRM_THRESHOLD
) -> dict[str, float | bool]:
    """``{"p_value", "ok"}`` for the results' ``srm`` block; ``ok`` is p ≥ ``threshold``."""
    p_value = srm_p_value(units, weights)
    return {"p_value": p_value, "ok": p_value >= threshold}
