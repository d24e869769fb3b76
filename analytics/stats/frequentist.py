"""Frequentist engine: Welch t-test and asymptotic confidence sequences (sequential testing).

Fixed horizon (gbstats ``frequentist/tests.py``, ``TwoSidedTTest``): for an estimate Δ̂ with standard
error s and Welch–Satterthwaite degrees of freedom ν,

    CI = Δ̂ ± t_{1−α/2, ν}·s,    p = 2·P(T_ν > |Δ̂/s|).

The same test is run on the absolute difference and on the relative lift (delta-method s); the
results' ``p_value`` is the relative-lift test's.

Sequential (gbstats ``SequentialTwoSidedTTest``; Waudby-Smith et al. 2023, "Time-uniform central
limit theory and asymptotic confidence sequences", arXiv:2103.06476v7): with N = n_a + n_b units
and the tuning parameter N* (``sequential_tuning``, default 5000, the sample size around which the
sequence is tightest),

    ρ  = sqrt((−2 ln α + ln(−2 ln α + 1)) / N*)                              (eq. 161)
    CS = Δ̂ ± s·√N · sqrt(2(Nρ² + 1) / (N²ρ²) · ln(sqrt(Nρ² + 1) / α))        (eq. 9)
    p  = min(1, sqrt(Nρ² + 1) · exp(−ρ²·N·(Δ̂/s)² / (2(Nρ² + 1))))             (eq. 155)

The sequence is valid at every look, so the false positive rate stays ≤ α however often results
are refreshed; p < α exactly when the sequence excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from analytics.stats.moments import EffectMoments

DEFAULT_SEQUENTIAL_TUNING = 5000.0


@dataclass(frozen=True)
class EstimateInterval:
    """One test's result: the estimate, its two-sided interval, standard error and p-value."""

    estimate: float
    ci: tuple[float, float]
    std_error: float
    p_value: float


@dataclass(frozen=True)
class FrequentistResult:
    absolute: EstimateInterval | None
    relative: EstimateInterval | None
    error: str | None


def t_test(estimate: float, variance: float, dof: float, alpha: float = 0.05) -> EstimateInterval:
    """Two-sided t-test and CI of an estimate with the given estimator variance and df.

    The p-value uses the survival function, 2·sf(|t|), instead of gbstats' 2·(1 − cdf(|t|)): the
    same number, without the cancellation that rounds very small p-values to 0. ``scipy.special``'s
    Student-t functions are what ``scipy.stats.t`` calls, without its per-call overhead.
    """
    std_error = math.sqrt(variance)
    halfwidth = float(special.stdtrit(dof, 1.0 - alpha / 2.0)) * std_error
    t_stat = estimate / std_error
    p_value = min(1.0, 2.0 * float(special.stdtr(dof, -abs(t_stat))))
    return EstimateInterval(estimate, (estimate - halfwidth, estimate + halfwidth), std_error, p_value)


def sequential_rho(alpha: float, sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING) -> float:
    """Mixing parameter ρ of the two-sided normal-mixture boundary (gbstats ``sequential_rho``)."""
    log_alpha = math.log(alpha)
    return math.sqrt((-2.0 * log_alpha + math.log(-2.0 * log_alpha + 1.0)) / sequential_tuning)


def sequential_halfwidth(std_error: float, n: int, alpha: float, rho: float) -> float:
    """Half-width of the asymptotic confidence sequence (gbstats ``sequential_interval_halfwidth``).

    ``std_error`` is the estimator's standard error; s² = std_error²·n is the per-observation
    variance the paper's formula expects.
    """
    s2 = std_error**2 * n
    nr2p1 = n * rho**2 + 1.0
    return math.sqrt(s2) * math.sqrt(2.0 * nr2p1 * math.log(math.sqrt(nr2p1) / alpha) / (n * rho) ** 2)


def sequential_p_value(estimate: float, std_error: float, n: int, rho: float) -> float:
    """Always-valid p-value, the reciprocal of the mixture e-value (gbstats, eq. 155).

    Computed in log space so large e-values do not overflow; p < α iff the sequence excludes 0.
    """
    st2 = (estimate / std_error) ** 2 * n
    nr2p1 = n * rho**2 + 1.0
    log_evalue = rho**2 * st2 / (2.0 * nr2p1) - 0.5 * math.log(nr2p1)
    return 1.0 if log_evalue <= 0 else math.exp(-log_evalue)


def sequential_test(
    estimate: float,
    variance: float,
    n: int,
    alpha: float = 0.05,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> EstimateInterval:
    """Confidence sequence and always-valid p-value for an estimate from ``n`` units in total."""
    rho = sequential_rho(alpha, sequential_tuning)
    std_error = math.sqrt(variance)
    halfwidth = sequential_halfwidth(std_error, n, alpha, rho)
    p_value = sequential_p_value(estimate, std_error, n, rho)
    return EstimateInterval(estimate, (estimate - halfwidth, estimate + halfwidth), std_error, p_value)


def frequentist_test(
    moments: EffectMoments,
    *,
    alpha: float = 0.05,
    sequential: bool = False,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> FrequentistResult:
    """Absolute and relative tests of one comparison; a part that cannot be computed is None."""
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be between 0 and 1")
    if sequential and not sequential_tuning > 0:
        raise ValueError("sequential_tuning must be positive")

    def run(estimate: float | None, variance: float | None) -> EstimateInterval | None:
        if estimate is None or variance is None or moments.dof is None:
            return None
        if sequential:
            n = moments.n_control + moments.n_treatment
            return sequential_test(estimate, variance, n, alpha, sequential_tuning)
        return t_test(estimate, variance, moments.dof, alpha)

    return FrequentistResult(
        absolute=run(moments.absolute, moments.absolute_variance),
        relative=run(moments.relative, moments.relative_variance),
        error=moments.error,
    )
