"""Power, minimum detectable effect (MDE) and duration of a planned experiment.

Follows GrowthBook's documented frequentist power analysis ("Power Analysis Technical Details",
docs/statistics/power-technical.mdx; two-sided tests, normal approximation, the same variance σ² in
every arm). For a relative lift Δ, baseline mean μ_A, μ_B = μ_A(1 + Δ) and n_A, n_B units:

    σ_Δ² = σ²/(n_A μ_A²) + σ² μ_B²/(n_B μ_A⁴)                        (delta method, as the engine)
    power = 1 − Φ(z_{1−α/2} − Δ/σ_Δ) + Φ(z_{α/2} − Δ/σ_Δ)

Because σ_Δ depends on Δ, the MDE solves Δ/σ_Δ(Δ) = k with k = z_{1−α/2} − z_{1−π}, a quadratic in
μ_B (the docs' closed form, generalised here to unequal arms). Duration solves the same equation
for the number of units, so days → MDE → days round-trips exactly.

Sequential testing: the test rejects when |Δ̂| exceeds the confidence sequence's half-width
m·σ_Δ, m = √N·sqrt(2(Nρ² + 1)/(N²ρ²)·ln(sqrt(Nρ² + 1)/α)) (N = units in the comparison), so the
critical value z_{1−α/2} becomes m: power = 1 − Φ(m − Δ/σ_Δ) + Φ(−m − Δ/σ_Δ), k = m − z_{1−π}. This is
the power of one look at the planned duration, a lower bound when results are read more often.
Deviation: GrowthBook's docs instead divide σ_Δ by z and multiply by m (σ̃ = σ_Δ·m/z), which also
widens the estimate's sampling spread and understates power (simulated: 0.91 where it plans 0.80).

Several treatments: weights are relative, the first is the control; every treatment is compared
with the control, and the experiment is as powerful as its weakest comparison (lowest power,
largest MDE, longest duration). ``daily_units`` are the units entering the experiment per day
(after traffic allocation). A binomial metric passes its rate as ``mean`` and no ``variance``
(σ² = p(1 − p)).

Floating point: products and quotients are written so that extreme inputs overflow to infinity
instead of raising (``x * x``, never ``x**2``; weights scaled by the largest first). A lift too small
for any finite number of units gets ``days_needed`` = ``math.inf``; callers turn that into a refusal.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from scipy import optimize, special

from analytics.stats.frequentist import DEFAULT_SEQUENTIAL_TUNING, sequential_rho

LOG_FLOAT_MAX = math.log(sys.float_info.max)  # exp() of more overflows


def _unit_variance(mean: float, variance: float | None) -> float:
    if mean == 0:
        raise ValueError("The baseline mean must be non-zero for a relative lift.")
    if variance is None:
        if not 0 < mean < 1:
            raise ValueError("Without a variance, mean is a conversion rate and must be in (0, 1).")
        variance = mean * (1.0 - mean)
    if not variance > 0:
        raise ValueError("The metric's variance must be positive.")
    return variance


def _fractions(weights: Sequence[float]) -> list[tuple[float, float]]:
    """(control share, treatment share) of the units for every treatment."""
    if len(weights) < 2 or any(not (math.isfinite(w) and w > 0) for w in weights):
        raise ValueError("weights need at least two positive, finite entries (control first).")
    largest = max(weights)
    scaled = [w / largest for w in weights]  # 1e308 + 1e308 would overflow; scaled, the sum is at most len
    total = math.fsum(scaled)
    fractions = [(scaled[0] / total, w / total) for w in scaled[1:]]
    if any(f_c == 0 or f_t == 0 for f_c, f_t in fractions):
        raise ValueError("weights are too far apart: a variant would get no units.")
    return fractions


def critical_value(n: float, alpha: float, sequential: bool, sequential_tuning: float) -> float:
    """Half-width of the test's interval in standard errors: z_{1−α/2}, or m for a confidence
    sequence over N = ``n`` units (see the module docstring)."""
    if not sequential:
        return float(special.ndtri(1.0 - alpha / 2.0))
    rho = sequential_rho(alpha, sequential_tuning)
    nr2p1 = n * rho**2 + 1.0
    return math.sqrt(n * 2.0 * nr2p1 * math.log(math.sqrt(nr2p1) / alpha) / (n * rho) ** 2)


def relative_lift_variance(
    mean: float, variance: float, relative_lift: float, n_control: float, n_treatment: float
) -> float:
    """Delta-method variance of the estimated lift with equal per-unit variance in both arms."""
    ratio = 1.0 + relative_lift
    return variance / n_control / mean / mean + variance * ratio * ratio / n_treatment / mean / mean


def statistical_power(
    *,
    relative_lift: float,
    mean: float,
    variance: float | None = None,
    units: float,
    weights: Sequence[float] = (1.0, 1.0),
    alpha: float = 0.05,
    sequential: bool = False,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> float:
    """Probability that a two-sided test on ``units`` units in total detects ``relative_lift``."""
    sigma2 = _unit_variance(mean, variance)
    powers = []
    for f_c, f_t in _fractions(weights):
        n_c, n_t = units * f_c, units * f_t
        z = critical_value(n_c + n_t, alpha, sequential, sequential_tuning)
        shift = relative_lift / math.sqrt(relative_lift_variance(mean, sigma2, relative_lift, n_c, n_t))
        powers.append(float(special.ndtr(shift - z) + special.ndtr(-z - shift)))
    return min(powers)


def _check_levels(alpha: float, target_power: float) -> None:
    if not (0 < alpha < 1 and 0 < target_power < 1):
        raise ValueError("alpha and power must be between 0 and 1.")


def minimum_detectable_effect(
    *,
    days: float,
    mean: float,
    variance: float | None = None,
    daily_units: float,
    weights: Sequence[float] = (1.0, 1.0),
    alpha: float = 0.05,
    target_power: float = 0.8,
    sequential: bool = False,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> float | None:
    """Smallest positive relative lift detected with ``target_power`` after ``days`` days.

    None when no lift is detectable with that many units (GrowthBook's existence condition: the
    quadratic's leading coefficient 1 − k²σ²/(n_B μ_A²) must be positive).
    """
    sigma2 = _unit_variance(mean, variance)
    _check_levels(alpha, target_power)
    z_power = float(special.ndtri(1.0 - target_power))
    units = days * daily_units
    worst = 0.0
    for f_c, f_t in _fractions(weights):
        n_c, n_t = units * f_c, units * f_t
        if n_c <= 0 or n_t <= 0:
            return None
        k = critical_value(n_c + n_t, alpha, sequential, sequential_tuning) - z_power
        # With r = μ_B/μ_A: (r − 1)² = b_c + b_t·r², b = k²σ² / (n μ_A²).
        b_c = k * k * sigma2 / n_c / mean / mean
        b_t = k * k * sigma2 / n_t / mean / mean
        leading = 1.0 - b_t
        discriminant = 1.0 - leading * (1.0 - b_c)
        if leading <= 0 or discriminant < 0:
            return None
        worst = max(worst, (1.0 + math.sqrt(discriminant)) / leading - 1.0)
    return worst


def days_needed(
    *,
    relative_lift: float,
    mean: float,
    variance: float | None = None,
    daily_units: float,
    weights: Sequence[float] = (1.0, 1.0),
    alpha: float = 0.05,
    target_power: float = 0.8,
    sequential: bool = False,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> float:
    """Days (fractional; round up to schedule) until ``relative_lift`` is detected with ``target_power``.

    Solves |Δ|/σ_Δ(n) = k for the units n, in closed form for fixed-horizon tests:
    n = k²σ²(1/f_A + (1 + Δ)²/f_B) / (μ_A²Δ²) with f the arms' shares of the units.
    ``math.inf`` when that many units is beyond floating point (a lift far too small to detect).
    """
    if relative_lift == 0 or relative_lift <= -1:
        raise ValueError("relative_lift must be non-zero and greater than -1.")
    if not daily_units > 0:
        raise ValueError("daily_units must be positive.")
    sigma2 = _unit_variance(mean, variance)
    _check_levels(alpha, target_power)
    z_power = float(special.ndtri(1.0 - target_power))
    longest = 0.0
    ratio = 1.0 + relative_lift
    for f_c, f_t in _fractions(weights):
        per_unit = sigma2 * (1.0 / f_c + ratio * ratio / f_t) / mean / mean
        k = critical_value(0, alpha, False, sequential_tuning) - z_power
        units = k * k * per_unit / relative_lift / relative_lift
        if not math.isfinite(units):
            return math.inf
        if sequential:
            # k depends on the units through the sequence's half-width: solve |Δ|/σ_Δ(n) = k(n).
            def gap(log_units: float, per_unit: float = per_unit, share: float = f_c + f_t) -> float:
                n = math.exp(log_units)
                k_n = critical_value(n * share, alpha, True, sequential_tuning) - z_power
                return abs(relative_lift) * math.sqrt(n / per_unit) - k_n

            lo, hi = math.log(units), math.log(units) + 1.0
            while gap(lo) > 0:
                lo -= 1.0
            while gap(hi) < 0:
                hi += 1.0
                if hi > LOG_FLOAT_MAX:
                    return math.inf
            units = math.exp(optimize.brentq(gap, lo, hi, xtol=1e-12))
        longest = max(longest, units / daily_units)
    return longest
