"""The top-level analysis: contract shape, JSON safety, nulls per engine, direction, degenerate input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from analytics.stats import (
    AnalysisOptions,
    CupedStats,
    GaussianPrior,
    RatioCupedStats,
    RatioStats,
    SampleStats,
    analyse_metric,
    compare,
    summarise_variants,
)
from tests.analytics.stats.simulation import correlated_normal, seeded

COMPARISON_KEYS = {
    "variant",
    "baseline",
    "relative",
    "absolute",
    "p_value",
    "p_value_adjusted",
    "significant",
    "direction",
    "chance_to_win",
    "risk",
    "error",
}


def _variants(kind: str, seed: int = 1) -> list[tuple[str, object]]:
    rng = seeded(seed)
    keys = ["control", "b", "c"]
    if kind == "plain":
        return [(k, SampleStats.from_values(rng.exponential(3 + 0.2 * i, 700))) for i, k in enumerate(keys)]
    if kind == "binomial":
        rates = [0.2, 0.22, 0.24]
        return [
            (k, SampleStats.from_values(rng.binomial(1, r, 900))) for k, r in zip(keys, rates, strict=True)
        ]
    if kind == "cuped":
        out = []
        for i, k in enumerate(keys):
            y, x = correlated_normal(rng, (600,), rho=0.6)
            out.append((k, CupedStats.from_values(y + 0.3 * i, x)))
        return out
    d = 1.0 + rng.poisson(2.0, (3, 2, 500))
    m = rng.binomial(d.astype(int), 0.1).astype(float)
    if kind == "ratio":
        return [(k, RatioStats.from_values(m[i, 0], d[i, 0])) for i, k in enumerate(keys)]
    return [(k, RatioCupedStats.from_values(m[i, 0], d[i, 0], m[i, 1], d[i, 1])) for i, k in enumerate(keys)]


def _options(kind: str, **kwargs) -> AnalysisOptions:
    return AnalysisOptions(cuped=kind in ("cuped", "ratio_cuped"), binomial=kind == "binomial", **kwargs)


def _plain_numbers(value) -> bool:
    """Only None, bool, str, int, plain finite float, and lists/dicts of those."""
    if value is None or isinstance(value, bool | str | int) and not isinstance(value, np.generic):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain_numbers(v) for v in value)
    if isinstance(value, dict):
        return all(_plain_numbers(v) for v in value.values())
    return False


ENGINES = [
    pytest.param({"engine": "frequentist"}, id="frequentist"),
    pytest.param({"engine": "frequentist", "sequential": True}, id="sequential"),
    pytest.param({"engine": "bayesian"}, id="bayesian"),
    pytest.param({"engine": "bayesian", "prior": GaussianPrior(0.0, 0.1)}, id="bayesian_prior"),
]
KINDS = ["plain", "binomial", "cuped", "ratio", "ratio_cuped"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_analyse_metric__every_engine_and_metric_kind__contract_shaped_json(kind, engine):
    variants = _variants(kind)
    comparisons = analyse_metric(variants, _options(kind, **engine))

    assert [c["variant"] for c in comparisons] == ["b", "c"]
    assert all(c["baseline"] == "control" for c in comparisons)
    for comparison in comparisons:
        assert set(comparison) == COMPARISON_KEYS
        assert _plain_numbers(comparison)
        json.dumps(comparison, allow_nan=False)
        assert comparison["error"] is None
        for scale in ("relative", "absolute"):
            assert comparison[scale]["ci"][0] < comparison[scale]["estimate"] < comparison[scale]["ci"][1]
        if engine["engine"] == "frequentist":
            assert 0 <= comparison["p_value"] <= 1
            assert comparison["p_value_adjusted"] == comparison["p_value"]
            assert comparison["chance_to_win"] is None and comparison["risk"] is None
        else:
            assert comparison["p_value"] is None
            assert 0 <= comparison["chance_to_win"] <= 1
            assert len(comparison["risk"]) == 2 and min(comparison["risk"]) >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_summarise_variants__any_kind__units_and_unadjusted_mean(kind):
    variants = _variants(kind)
    summary = summarise_variants(variants)
    json.dumps(summary, allow_nan=False)
    for row, (key, stats) in zip(summary, variants, strict=True):
        expected = stats.m_sum / stats.d_sum if isinstance(stats, RatioStats) else stats.sum / stats.n
        assert row == {"variant": key, "units": stats.n, "mean": pytest.approx(expected, rel=1e-15)}


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_frequentist_significant__fixed_horizon__same_as_p_value_below_alpha(alpha):
    for seed in range(40):
        comparison = analyse_metric(_variants("plain", seed), AnalysisOptions(alpha=alpha))[0]
        assert comparison["significant"] == (comparison["p_value"] < alpha)


def test_analyse_metric__cuped_theta__estimated_per_comparison_from_baseline_and_that_variant():
    rng = seeded(4)
    raw = []
    for slope in (0.5, 0.5, 2.0):  # variant "c" has a very different pre/post relation
        x = rng.normal(10, 2, 2000)
        raw.append((slope * x + rng.normal(0, 1, 2000), x))
    keys = ["control", "b", "c"]
    variants = [(k, CupedStats.from_values(y, x)) for k, (y, x) in zip(keys, raw, strict=True)]

    together = analyse_metric(variants, AnalysisOptions(cuped=True))
    alone = [compare(variants[0], v, AnalysisOptions(cuped=True)) for v in variants[1:]]

    assert together == alone  # no comparison's θ depends on the other variants
    for comparison, (y, x) in zip(together, raw[1:], strict=True):
        theta = np.polyfit(np.r_[raw[0][1], x], np.r_[raw[0][0], y], 1)[0]
        expected = (y.mean() - theta * x.mean()) - (raw[0][0].mean() - theta * raw[0][1].mean())
        assert comparison["absolute"]["estimate"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("engine", ["frequentist", "bayesian"])
def test_analyse_metric__lower_is_better_metric_went_down__improvement(engine):
    # Given a clear drop in a lower-is-better metric (e.g. page load time)
    rng = seeded(6)
    variants = [
        ("control", SampleStats.from_values(rng.normal(2.0, 0.5, 3000))),
        ("faster", SampleStats.from_values(rng.normal(1.9, 0.5, 3000))),
    ]
    up = analyse_metric(variants, AnalysisOptions(engine=engine, higher_is_better=True))[0]
    down = analyse_metric(variants, AnalysisOptions(engine=engine, higher_is_better=False))[0]

    assert down["significant"] and down["direction"] == "improved"
    assert up["direction"] == "regressed"
    assert down["relative"] == up["relative"]  # the lift itself does not depend on the direction
    if engine == "bayesian":
        assert down["chance_to_win"] > 0.99
        assert down["chance_to_win"] == pytest.approx(1 - up["chance_to_win"], abs=1e-12)
        assert down["risk"] == [up["risk"][1], up["risk"][0]]


SOME = SampleStats(100, 40, 60)
DEGENERATE = [
    pytest.param(SampleStats(0, 0, 0), SOME, "too_few_units", id="empty_control"),
    pytest.param(SOME, SampleStats(1, 3, 9), "too_few_units", id="one_unit_treatment"),
    pytest.param(SampleStats(100, 300, 900), SOME, "zero_variance", id="constant_control"),
    pytest.param(SampleStats(500, 0, 0), SampleStats(500, 7, 7), "zero_variance", id="binary_no_conversions"),
    # Values of 1.7e308 (accepted before EVENT_MAX_ABS_VALUE): the sums overflow; the reason is not "zero_variance"
    pytest.param(SampleStats(100, 1.7e308, math.inf), SOME, "non_finite", id="overflowed_squares"),
    pytest.param(SOME, SampleStats(100, math.inf, math.inf), "non_finite", id="overflowed_sum"),
    pytest.param(SampleStats(100, math.nan, math.nan), SOME, "non_finite", id="nan_sums"),
    pytest.param(
        SampleStats(100, 1e200, 1e300), SOME, "non_finite", id="sum_squared_overflows_in_the_variance"
    ),
    pytest.param(
        CupedStats(100, 40, 60, math.inf, math.inf, 5),
        CupedStats(100, 40, 60, 3, 5, 5),
        "non_finite",
        id="cuped_covariate_overflowed",
    ),
    pytest.param(
        RatioStats(100, 1e300, 1e300, 1e-200, 1e-200, 1e100),
        RatioStats(100, 40, 60, 50, 80, 60),
        "non_finite",
        id="ratio_overflows_in_the_delta_method",
    ),
]


@pytest.mark.parametrize("engine", ["frequentist", "bayesian"])
@pytest.mark.parametrize(("control", "treatment", "error"), DEGENERATE)
def test_compare__degenerate_input__none_estimates_not_nan(control, treatment, error, engine):
    comparison = compare(("control", control), ("b", treatment), AnalysisOptions(engine=engine))
    json.dumps(comparison, allow_nan=False)
    assert comparison["error"] == error
    assert comparison["relative"] == {"estimate": None, "ci": None}
    assert comparison["absolute"] == {"estimate": None, "ci": None}
    assert comparison["p_value"] is None and comparison["chance_to_win"] is None
    assert comparison["risk"] is None
    assert comparison["significant"] is False and comparison["direction"] == "inconclusive"


@pytest.mark.parametrize("engine", ["frequentist", "bayesian"])
def test_compare__baseline_mean_zero__relative_none_absolute_reported(engine):
    # Given a control whose values average exactly 0 (e.g. net balance changes)
    control = SampleStats.from_values(np.tile([-2.0, 2.0], 200))
    treatment = SampleStats.from_values(np.tile([-1.0, 3.5], 200))

    comparison = compare(("control", control), ("b", treatment), AnalysisOptions(engine=engine))

    assert comparison["error"] == "baseline_zero"
    assert comparison["relative"] == {"estimate": None, "ci": None}
    assert comparison["absolute"]["estimate"] == pytest.approx(1.25)
    assert comparison["p_value"] is None and comparison["chance_to_win"] is None
    assert comparison["significant"] is True and comparison["direction"] == "improved"


def test_analyse_metric__only_control__no_comparisons():
    assert analyse_metric([("control", SampleStats(10, 5, 5))]) == []
    assert analyse_metric([]) == []


@pytest.mark.parametrize(
    "kwargs", [{"engine": "bandit"}, {"alpha": 0}, {"alpha": 1.5}, {"sequential_tuning": 0}]
)
def test_analysis_options__invalid__raises_value_error(kwargs):
    with pytest.raises(ValueError):
        AnalysisOptions(**kwargs)


def test_analyse_metric__ratio_and_plain_mixed__raises_type_error():
    with pytest.raises(TypeError):
        analyse_metric([("control", SampleStats(10, 5, 5)), ("b", RatioStats(10, 1, 1, 2, 4, 2))])
