"""CUPED (regression adjustment) from sufficient statistics, as GrowthBook computes it.

With y the metric and x its pre-exposure covariate, each variant's adjusted mean is
ȳ − θ·x̄ and its per-unit variance Var(y) + θ²·Var(x) − 2θ·Cov(y, x). θ is estimated once per
comparison from the baseline and that variant pooled (gbstats ``compute_theta``), so both arms
share it and the adjustment stays unbiased under randomisation. With the optimal θ the variance
falls by the factor 1 − ρ², ρ being the correlation of y and x.

Ratio metrics with CUPED follow gbstats ``RegressionAdjustedRatioStatistic``: the adjusted ratio is
R_post − θ·R_pre, its variance the delta method over the 4-vector (m̄_post, d̄_post, m̄_pre, d̄_pre).
"""

from __future__ import annotations

import numpy as np

from analytics.stats.statistics import (
    CupedStats,
    RatioCupedStats,
    SampleStats,
    covariance,
    mean,
    sample_variance,
    variance,
)

# gbstats reverts a ratio comparison to the unadjusted analysis below this |theta|.
RATIO_THETA_EPSILON = 1e-8


def cuped_theta(control: CupedStats, treatment: CupedStats, *, binomial: bool = False) -> float:
    """θ = Cov(y, x) / Var(x) over the baseline and the variant pooled.

    Source: gbstats ``compute_theta`` (joint statistics of both arms, ``create_joint_statistic``).
    Returns 0 when either pooled variance is 0; callers then fall back to the unadjusted analysis,
    as GrowthBook does.
    """
    n = control.n + treatment.n
    joint_post = SampleStats(n, control.sum + treatment.sum, control.sum_squares + treatment.sum_squares)
    joint_pre = SampleStats(
        n, control.pre_sum + treatment.pre_sum, control.pre_sum_squares + treatment.pre_sum_squares
    )
    var_pre = variance(joint_pre, binomial=binomial)
    if var_pre == 0 or variance(joint_post, binomial=binomial) == 0:
        return 0.0
    cov = covariance(
        n,
        joint_post.sum,
        joint_pre.sum,
        control.sum_products + treatment.sum_products,
        binomial=binomial,
    )
    return cov / var_pre


def cuped_mean(stats: CupedStats, theta: float) -> float:
    """Adjusted mean ȳ − θ·x̄ (gbstats ``RegressionAdjustedStatistic.mean``)."""
    return mean(stats.n, stats.sum) - theta * mean(stats.n, stats.pre_sum)


def _post_pre_covariance(stats: CupedStats, binomial: bool) -> float:
    return covariance(stats.n, stats.sum, stats.pre_sum, stats.sum_products, binomial=binomial)


def cuped_variance(stats: CupedStats, theta: float, *, binomial: bool = False) -> float:
    """Per-unit adjusted variance Var(y) + θ²Var(x) − 2θCov(y, x); 0 when n ≤ 1.

    Source: gbstats ``RegressionAdjustedStatistic.variance``.
    """
    if stats.n <= 1:
        return 0.0
    return (
        variance(stats.post, binomial=binomial)
        + theta**2 * variance(stats.pre, binomial=binomial)
        - 2.0 * theta * _post_pre_covariance(stats, binomial)
    )


def cuped_relative_variance(
    control: CupedStats, treatment: CupedStats, theta: float, *, binomial: bool = False
) -> float:
    """Delta-method variance of the CUPED relative lift (ȳ_b − θx̄_b − ȳ_a + θx̄_a) / ȳ_a.

    Source: gbstats ``frequentist_variance_relative_cuped``. Treatment gradient (1/ȳ_a, −θ/ȳ_a);
    control gradient (−ȳ_b/ȳ_a², θ/ȳ_a), where GrowthBook drops the θ(x̄_b − x̄_a) term of the
    ȳ_a derivative (zero in expectation under randomisation).
    """
    mean_a = mean(control.n, control.sum)
    if control.n == 0 or treatment.n == 0 or mean_a == 0:
        return 0.0
    v_trt = cuped_variance(treatment, theta, binomial=binomial) / (treatment.n * mean_a**2)
    const = -mean(treatment.n, treatment.sum)
    num_a = variance(control.post, binomial=binomial) * const**2 / mean_a**2
    num_b = 2.0 * theta * _post_pre_covariance(control, binomial) * const / mean_a
    num_c = theta**2 * variance(control.pre, binomial=binomial)
    v_ctrl = (num_a + num_b + num_c) / (control.n * mean_a**2)
    return v_trt + v_ctrl


# --- ratio metrics with CUPED -------------------------------------------------------------


def _ratio_cuped_betahat(stats: RatioCupedStats) -> np.ndarray:
    """Per-unit means (m̄_post, d̄_post, m̄_pre, d̄_pre)."""
    sums = (stats.m_sum, stats.d_sum, stats.m_pre_sum, stats.d_pre_sum)
    return np.array([mean(stats.n, total) for total in sums])


def _ratio_cuped_lambda(stats: RatioCupedStats) -> np.ndarray:
    """Per-unit covariance matrix of (m_post, d_post, m_pre, d_pre) (gbstats ``lambda_matrix``)."""
    n = stats.n
    v_m = sample_variance(n, stats.m_sum, stats.m_sum_squares)
    v_d = sample_variance(n, stats.d_sum, stats.d_sum_squares)
    v_mp = sample_variance(n, stats.m_pre_sum, stats.m_pre_sum_squares)
    v_dp = sample_variance(n, stats.d_pre_sum, stats.d_pre_sum_squares)
    c_m_d = covariance(n, stats.m_sum, stats.d_sum, stats.md_sum_products)
    c_m_mp = covariance(n, stats.m_sum, stats.m_pre_sum, stats.m_post_m_pre_sum_products)
    c_m_dp = covariance(n, stats.m_sum, stats.d_pre_sum, stats.m_post_d_pre_sum_products)
    c_d_mp = covariance(n, stats.d_sum, stats.m_pre_sum, stats.m_pre_d_post_sum_products)
    c_d_dp = covariance(n, stats.d_sum, stats.d_pre_sum, stats.d_post_d_pre_sum_products)
    c_mp_dp = covariance(n, stats.m_pre_sum, stats.d_pre_sum, stats.m_pre_d_pre_sum_products)
    return np.array(
        [
            [v_m, c_m_d, c_m_mp, c_m_dp],
            [c_m_d, v_d, c_d_mp, c_d_dp],
            [c_m_mp, c_d_mp, v_mp, c_mp_dp],
            [c_m_dp, c_d_dp, c_mp_dp, v_dp],
        ]
    )


def _ratio_cuped_nabla(betahat: np.ndarray, theta: float) -> np.ndarray:
    """Gradient of R_post − θR_pre w.r.t. (m̄_post, d̄_post, m̄_pre, d̄_pre) (gbstats ``nabla``)."""
    if betahat[1] == 0 or betahat[3] == 0:
        return np.zeros(4)
    return np.array(
        [
            1.0 / betahat[1],
            -betahat[0] / betahat[1] ** 2,
            -theta / betahat[3],
            theta * betahat[2] / betahat[3] ** 2,
        ]
    )


def ratio_cuped_theta(control: RatioCupedStats, treatment: RatioCupedStats) -> float:
    """θ = ΣCov(R_post, R_pre) / ΣVar(R_pre) over both arms (per-unit delta-method moments).

    Source: gbstats ``compute_theta_regression_adjusted_ratio`` (evaluated with θ = 1 so the
    gradients do not depend on θ). Returns 0 when the pre-period ratio has no variance.
    """
    cov_total = 0.0
    var_pre_total = 0.0
    for stats in (control, treatment):
        nabla = _ratio_cuped_nabla(_ratio_cuped_betahat(stats), 1.0)
        lam = _ratio_cuped_lambda(stats)
        cov_total += float(nabla[2:4] @ lam[2:4, 0:2] @ nabla[0:2])
        var_pre_total += float(nabla[2:4] @ lam[2:4, 2:4] @ nabla[2:4])
    if var_pre_total == 0:
        return 0.0
    return -cov_total / var_pre_total


def ratio_cuped_mean(stats: RatioCupedStats, theta: float) -> float:
    """Adjusted ratio Σm/Σd − θ·Σm_pre/Σd_pre (0 when a denominator sums to 0, as gbstats)."""
    if stats.d_sum == 0 or stats.d_pre_sum == 0:
        return 0.0
    return stats.m_sum / stats.d_sum - theta * stats.m_pre_sum / stats.d_pre_sum


def ratio_cuped_variance(stats: RatioCupedStats, theta: float) -> float:
    """Per-unit delta-method variance ∇ᵀΛ∇ of the adjusted ratio; 0 when n ≤ 1."""
    if stats.n <= 1:
        return 0.0
    nabla = _ratio_cuped_nabla(_ratio_cuped_betahat(stats), theta)
    return float(nabla @ _ratio_cuped_lambda(stats) @ nabla)


def ratio_cuped_relative_variance(
    control: RatioCupedStats, treatment: RatioCupedStats, theta: float
) -> float:
    """Delta-method variance of the relative lift of adjusted ratios over the unadjusted baseline.

    Source: gbstats ``frequentist_variance_relative_cuped_ratio`` (transcribed term by term).
    """
    beta_a = _ratio_cuped_betahat(control)
    if control.d_sum == 0 or beta_a[1] == 0 or control.n <= 1 or treatment.n <= 1:
        return 0.0
    unadjusted_a = control.m_sum / control.d_sum
    if unadjusted_a == 0:
        return 0.0
    g_abs = ratio_cuped_mean(treatment, theta) - ratio_cuped_mean(control, theta)
    g_rel_den = abs(unadjusted_a)
    nabla_a_abs = _ratio_cuped_nabla(beta_a, theta)
    nabla_a = np.array(
        [
            (-(g_rel_den + g_abs) / beta_a[1]) / g_rel_den**2,
            (beta_a[0] * g_rel_den / beta_a[1] ** 2 + beta_a[0] * g_abs / beta_a[1] ** 2) / g_rel_den**2,
            -nabla_a_abs[2] / g_rel_den,
            -nabla_a_abs[3] / g_rel_den,
        ]
    )
    nabla_b = _ratio_cuped_nabla(_ratio_cuped_betahat(treatment), theta) / g_rel_den
    return float(
        nabla_a @ _ratio_cuped_lambda(control) @ nabla_a / control.n
        + nabla_b @ _ratio_cuped_lambda(treatment) @ nabla_b / treatment.n
    )
