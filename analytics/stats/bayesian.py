"""Bayesian engine: Gaussian posterior on the relative lift (gbstats ``EffectBayesianABTest``).

The data enter through the same delta-method moments as the frequentist engine: the lift estimate
Δ̂ and its variance v. With an improper (flat) prior the posterior is N(Δ̂, v); with a proper prior
N(μ₀, σ₀²) on the relative lift it is the conjugate normal update

    precision = 1/v + 1/σ₀²,    mean = (Δ̂/v + μ₀/σ₀²) / precision.

From the posterior N(μ, σ²):

* chance to win = P(lift > 0) = Φ(μ/σ); for a lower-is-better metric P(lift < 0) (gbstats flips it
  for ``inverse`` metrics);
* risk = [E max(lift, 0), E max(−lift, 0)] = [expected relative loss of keeping the baseline,
  expected relative loss of shipping the variant], swapped for lower-is-better metrics. gbstats
  ``get_risk`` computes them as P(lift > 0)·E[lift | lift > 0] and −P(lift < 0)·E[lift | lift < 0]
  with truncated-normal means; the closed forms used here are the same quantities:
  E max(X, 0) = μΦ(μ/σ) + σφ(μ/σ) and E max(−X, 0) = −μΦ(−μ/σ) + σφ(μ/σ);
* credible interval = the (α/2, 1 − α/2) normal quantiles.

The ``absolute`` interval is the normal interval on the difference of means, whatever the prior
(docs/analysis.md: the prior is a belief about the relative lift; gbstats would rescale it by the baseline
mean for its absolute mode, which this engine does not use).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from analytics.stats.moments import EffectMoments


@dataclass(frozen=True)
class GaussianPrior:
    """Proper normal prior on the relative lift (e.g. mean 0, variance 0.3² for "lifts of ±30%")."""

    mean: float = 0.0
    variance: float = 1.0

    def __post_init__(self) -> None:
        if not self.variance > 0:
            raise ValueError("A prior's variance must be positive.")


@dataclass(frozen=True)
class Posterior:
    mean: float
    std: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class BayesianResult:
    relative: Posterior | None
    absolute: Posterior | None
    chance_to_win: float | None
    risk: tuple[float, float] | None
    error: str | None


def gaussian_posterior(
    data_mean: float, data_variance: float, prior: GaussianPrior | None = None, alpha: float = 0.05
) -> Posterior:
    """Normal posterior of an effect from its estimate and variance (flat prior when ``prior`` is None)."""
    if prior is None:
        post_mean, post_var = data_mean, data_variance
    else:
        precision = 1.0 / data_variance + 1.0 / prior.variance
        post_mean = (data_mean / data_variance + prior.mean / prior.variance) / precision
        post_var = 1.0 / precision
    std = math.sqrt(post_var)
    halfwidth = float(special.ndtri(1.0 - alpha / 2.0)) * std
    return Posterior(post_mean, std, (post_mean - halfwidth, post_mean + halfwidth))


def chance_to_win(mean: float, std: float, *, higher_is_better: bool = True) -> float:
    """Posterior probability that the variant beats the baseline in the metric's good direction."""
    return float(special.ndtr(mean / std if higher_is_better else -mean / std))


def expected_loss(mean: float, std: float, *, higher_is_better: bool = True) -> tuple[float, float]:
    """Risk: (expected loss of keeping the baseline, expected loss of shipping the variant).

    For higher-is-better metrics these are E max(lift, 0) and E max(−lift, 0); lower-is-better swaps
    them (gbstats ``EffectBayesianABTest.compute_result``: "flip risk for inverse metrics").
    """
    z = mean / std
    density = std * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    gain = mean * float(special.ndtr(z)) + density  # E max(X, 0)
    loss = -mean * float(special.ndtr(-z)) + density  # E max(-X, 0)
    # Both are expectations of non-negative quantities; clip rounding noise in far tails.
    gain, loss = max(gain, 0.0), max(loss, 0.0)
    return (gain, loss) if higher_is_better else (loss, gain)


def bayesian_test(
    moments: EffectMoments,
    *,
    alpha: float = 0.05,
    prior: GaussianPrior | None = None,
    higher_is_better: bool = True,
) -> BayesianResult:
    """Posterior of the relative lift (and of the absolute difference) for one comparison.

    chance to win and risk come from the relative posterior; both are None when the relative lift is
    undefined (baseline mean 0) or the moments are degenerate.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be between 0 and 1")

    relative = None
    if moments.relative is not None and moments.relative_variance is not None:
        relative = gaussian_posterior(moments.relative, moments.relative_variance, prior, alpha)

    # The absolute effect is reported as the normal interval on the difference of means (docs/analysis.md),
    # whatever the prior: the prior is a belief about the relative lift, and it shrinks that posterior
    # (and so chance to win and risk) only. GrowthBook's absolute mode would scale the prior by the
    # baseline mean instead; here the absolute numbers stay what the data alone say.
    absolute = None
    if moments.absolute is not None and moments.absolute_variance is not None:
        absolute = gaussian_posterior(moments.absolute, moments.absolute_variance, None, alpha)

    if relative is None:
        return BayesianResult(None, absolute, None, None, moments.error)
    return BayesianResult(
        relative=relative,
        absolute=absolute,
        chance_to_win=chance_to_win(relative.mean, relative.std, higher_is_better=higher_is_better),
        risk=expected_loss(relative.mean, relative.std, higher_is_better=higher_is_better),
        error=moments.error,
    )
