"""Effect moments of one comparison (baseline vs one variant): estimates and their variances.

Both engines start here, as GrowthBook's do (gbstats ``EffectMoments``): the absolute effect is the
difference of (CUPED-adjusted) means with variance Var_b/n_b + Var_a/n_a; the relative lift is
(mean_b − mean_a) / |unadjusted mean_a| (gbstats ``frequentist_diff``) with its variance by the delta method:

    Var(lift) ≈ Var_b / (n_b·μ_a²) + Var_a·μ_b² / (n_a·μ_a⁴)

(gbstats ``frequentist_variance`` → ``variance_of_ratios`` with zero covariance between arms), or the
CUPED / ratio-CUPED variants in :mod:`analytics.stats.cuped`.

Degenerate input never raises: the moments carry ``error`` and None for what cannot be computed.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

from analytics.stats.cuped import (
    RATIO_THETA_EPSILON,
    cuped_mean,
    cuped_relative_variance,
    cuped_theta,
    cuped_variance,
    ratio_cuped_mean,
    ratio_cuped_relative_variance,
    ratio_cuped_theta,
    ratio_cuped_variance,
)
from analytics.stats.quantile import (
    QuantileStats,
    initial_variance,
    quantile_variance,
    too_few_observations,
)
from analytics.stats.statistics import (
    CupedStats,
    MetricStats,
    RatioCupedStats,
    RatioStats,
    SampleStats,
    mean,
    ratio_mean,
    ratio_variance,
    unadjusted_mean,
    variance,
    variance_of_ratio,
)

# Reasons an effect (or part of it) cannot be computed; stable strings for the API and the UI.
TOO_FEW_UNITS = "too_few_units"  # a variant has fewer than 2 units
ZERO_VARIANCE = "zero_variance"  # a variant's metric does not vary (gbstats ZERO_NEGATIVE_VARIANCE)
BASELINE_ZERO = "baseline_zero"  # the baseline mean is 0, so a relative lift is undefined
# A sum, a variance or an estimate is not a finite number: values so large (or small) that adding or
# squaring them goes beyond double precision (ingestion refuses such values, see EVENT_MAX_ABS_VALUE;
# older rows may hold them). Checked before ZERO_VARIANCE, which a NaN variance would otherwise report.
NON_FINITE = "non_finite"


@dataclass(frozen=True)
class EffectMoments:
    """Point estimates and estimator variances of one comparison.

    ``absolute_variance`` and ``relative_variance`` are variances of the estimators (already divided
    by the sample sizes). ``relative`` is None (with ``error`` = ``baseline_zero``) when the baseline
    mean is 0; everything is None when a variant has < 2 units, no variance, or numbers too large to
    compute with (``non_finite``).
    """

    n_control: int
    n_treatment: int
    mean_control: float | None  # unadjusted, as reported
    mean_treatment: float | None
    variance_control: float | None  # per-unit (CUPED-adjusted when CUPED applies)
    variance_treatment: float | None
    absolute: float | None
    absolute_variance: float | None
    relative: float | None
    relative_variance: float | None
    dof: float | None  # Welch–Satterthwaite degrees of freedom
    theta: float | None  # CUPED θ when the adjustment was applied
    error: str | None


@dataclass(frozen=True)
class _Arm:
    n: int
    mean: float  # adjusted when CUPED applies
    unadjusted_mean: float
    variance: float  # per unit


def welch_dof(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom (gbstats ``TTest.dof``).

    df = (v_b/n_b + v_a/n_a)² / (v_b²/(n_b²(n_b − 1)) + v_a²/(n_a²(n_a − 1)))
    """
    return (var_b / n_b + var_a / n_a) ** 2 / (
        var_b**2 / (n_b**2 * (n_b - 1)) + var_a**2 / (n_a**2 * (n_a - 1))
    )


def _plain_arm(stats: SampleStats, binomial: bool) -> _Arm:
    m = mean(stats.n, stats.sum)
    return _Arm(stats.n, m, m, variance(stats, binomial=binomial))


def _ratio_arm(stats: RatioStats) -> _Arm:
    m = ratio_mean(stats)
    return _Arm(stats.n, m, m, ratio_variance(stats))


def _arms(
    control: MetricStats, treatment: MetricStats, binomial: bool, cuped: bool
) -> tuple[_Arm, _Arm, float | None, float | None]:
    """Both arms' moments, θ (None without CUPED) and a special relative variance if any."""
    if isinstance(control, RatioStats) != isinstance(treatment, RatioStats) or isinstance(
        control, QuantileStats
    ) != isinstance(treatment, QuantileStats):
        raise TypeError("A comparison needs the same kind of statistics for both variants.")
    if isinstance(control, QuantileStats) and isinstance(treatment, QuantileStats):
        # gbstats QuantileStatistic: the mean is the quantile, the variance its σ² (analytics.stats.quantile)
        arms = tuple(_Arm(s.n, s.estimate, s.estimate, quantile_variance(s)) for s in (control, treatment))
        return arms[0], arms[1], None, None
    if cuped and isinstance(control, RatioCupedStats) and isinstance(treatment, RatioCupedStats):
        theta = ratio_cuped_theta(control, treatment)
        if abs(theta) >= RATIO_THETA_EPSILON:
            arms = tuple(
                _Arm(s.n, ratio_cuped_mean(s, theta), ratio_mean(s), ratio_cuped_variance(s, theta))
                for s in (control, treatment)
            )
            return arms[0], arms[1], theta, ratio_cuped_relative_variance(control, treatment, theta)
    if isinstance(control, RatioStats) and isinstance(treatment, RatioStats):
        if cuped and not (isinstance(control, RatioCupedStats) and isinstance(treatment, RatioCupedStats)):
            raise TypeError("CUPED on a ratio metric needs RatioCupedStats for every variant.")
        return _ratio_arm(control), _ratio_arm(treatment), None, None
    if cuped:
        if not (isinstance(control, CupedStats) and isinstance(treatment, CupedStats)):
            raise TypeError("CUPED needs CupedStats for every variant.")
        theta = cuped_theta(control, treatment, binomial=binomial)
        if theta != 0:
            arms = tuple(
                _Arm(
                    s.n,
                    cuped_mean(s, theta),
                    mean(s.n, s.sum),
                    cuped_variance(s, theta, binomial=binomial),
                )
                for s in (control, treatment)
            )
            rel_var = cuped_relative_variance(control, treatment, theta, binomial=binomial)
            return arms[0], arms[1], theta, rel_var
    plain_a = control.post if isinstance(control, CupedStats) else control
    plain_b = treatment.post if isinstance(treatment, CupedStats) else treatment
    return _plain_arm(plain_a, binomial), _plain_arm(plain_b, binomial), None, None


def _all_finite(values: tuple[float, ...]) -> bool:
    return all(math.isfinite(value) for value in values)


def effect_moments(
    control: MetricStats,
    treatment: MetricStats,
    *,
    binomial: bool = False,
    cuped: bool = False,
) -> EffectMoments:
    """Absolute and relative effect of ``treatment`` over ``control`` with estimator variances.

    ``binomial``: the metric is 0/1 per unit; variances are p(1 − p) as in gbstats
    ``ProportionStatistic``. ``cuped``: apply regression adjustment (needs ``CupedStats`` or
    ``RatioCupedStats``); θ is estimated from these two variants pooled. When θ comes out 0 (no
    variance in a period) the unadjusted analysis is used, as GrowthBook does.
    """

    def degenerate(error: str, theta: float | None = None) -> EffectMoments:
        return EffectMoments(
            n_control=control.n,
            n_treatment=treatment.n,
            mean_control=unadjusted_mean(control),
            mean_treatment=unadjusted_mean(treatment),
            variance_control=None,
            variance_treatment=None,
            absolute=None,
            absolute_variance=None,
            relative=None,
            relative_variance=None,
            dof=None,
            theta=theta,
            error=error,
        )

    if not (_all_finite(astuple(control)) and _all_finite(astuple(treatment))):
        return degenerate(NON_FINITE)
    try:
        arm_a, arm_b, theta, special_rel_var = _arms(control, treatment, binomial, cuped)
    except ArithmeticError:  # overflow, or a square that underflowed to 0 and is divided by
        return degenerate(NON_FINITE)
    if arm_a.n < 2 or arm_b.n < 2:
        return degenerate(TOO_FEW_UNITS, theta)
    if isinstance(control, QuantileStats) and isinstance(treatment, QuantileStats):
        # gbstats QuantileStatistic._has_zero_variance: too few observations for the bounds, or
        # bounds that collapsed to one value at every n* (checked before the variance's floor).
        if too_few_observations(control) or too_few_observations(treatment):
            return degenerate(TOO_FEW_UNITS)
        if not (initial_variance(control) > 0 and initial_variance(treatment) > 0):
            return degenerate(ZERO_VARIANCE)
    if not _all_finite((arm_a.mean, arm_b.mean, arm_a.unadjusted_mean, arm_b.unadjusted_mean,
                        arm_a.variance, arm_b.variance, theta or 0.0, special_rel_var or 0.0)):  # fmt: skip
        return degenerate(NON_FINITE, theta)
    if not (arm_a.variance > 0 and arm_b.variance > 0):
        return degenerate(ZERO_VARIANCE, theta)

    try:  # finite inputs can still overflow once squared (a mean of 1e100 to the fourth power)
        absolute = arm_b.mean - arm_a.mean
        absolute_variance = arm_b.variance / arm_b.n + arm_a.variance / arm_a.n
        relative: float | None = None
        relative_variance: float | None = None
        error: str | None = None
        if arm_a.mean == 0 or arm_a.unadjusted_mean == 0:
            error = BASELINE_ZERO
        else:
            # gbstats frequentist_diff: over |baseline|, so a rise is a positive lift whatever the sign
            relative = absolute / abs(arm_a.unadjusted_mean)
            if special_rel_var is not None:
                relative_variance = special_rel_var
            else:
                relative_variance = variance_of_ratio(
                    arm_b.unadjusted_mean,
                    arm_b.variance / arm_b.n,
                    arm_a.unadjusted_mean,
                    arm_a.variance / arm_a.n,
                    0.0,
                )
            if not _all_finite((relative, relative_variance)):
                relative, relative_variance, error = None, None, NON_FINITE
            elif not relative_variance > 0:
                relative, relative_variance, error = None, None, ZERO_VARIANCE
        if not _all_finite((absolute, absolute_variance)):
            return degenerate(NON_FINITE, theta)

        return EffectMoments(
            n_control=arm_a.n,
            n_treatment=arm_b.n,
            mean_control=unadjusted_mean(control),
            mean_treatment=unadjusted_mean(treatment),
            variance_control=arm_a.variance,
            variance_treatment=arm_b.variance,
            absolute=absolute,
            absolute_variance=absolute_variance,
            relative=relative,
            relative_variance=relative_variance,
            dof=welch_dof(arm_a.variance, arm_a.n, arm_b.variance, arm_b.n),
            theta=theta,
            error=error,
        )
    except ArithmeticError:  # overflow, or a square that underflowed to 0 and is divided by
        return degenerate(NON_FINITE, theta)
