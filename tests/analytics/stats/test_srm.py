"""Sample ratio mismatch against scipy.stats.chisquare."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analytics.stats import srm_check, srm_p_value


@pytest.mark.parametrize(
    ("units", "weights"),
    [
        pytest.param([5000, 5000], [1, 1], id="perfect_split"),
        pytest.param([5000, 5210], [1, 1], id="slight_imbalance"),
        pytest.param([1000, 1200], [0.5, 0.5], id="clear_mismatch"),
        pytest.param([3300, 3350, 3290], [1, 1, 1], id="three_way"),
        pytest.param([2000, 6100], [25, 75], id="uneven_weights"),
        pytest.param([10, 3, 7, 0], [1, 1, 1, 1], id="tiny_counts"),
    ],
)
def test_srm_p_value__units_and_weights__equals_scipy_chisquare(units, weights):
    expected_share = np.asarray(weights, dtype=float) / sum(weights)
    reference = scipy_stats.chisquare(units, f_exp=expected_share * sum(units))
    assert srm_p_value(units, weights) == pytest.approx(reference.pvalue, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize(
    ("units", "weights", "expected"),
    [
        pytest.param([0, 0], [1, 1], 1.0, id="no_units"),
        pytest.param([10, 0], [1, 0], 1.0, id="zero_weight_empty_leaves_one_variant"),
        pytest.param([10, 1], [1, 0], 0.0, id="units_in_zero_weight_variant"),
    ],
)
def test_srm_p_value__edge_cases__documented_answers(units, weights, expected):
    assert srm_p_value(units, weights) == expected


def test_srm_p_value__zero_weight_variant_without_units__left_out_of_the_test():
    reference = scipy_stats.chisquare([480, 520], f_exp=[500, 500])
    assert srm_p_value([480, 0, 520], [1, 0, 1]) == pytest.approx(reference.pvalue, rel=1e-10)


@pytest.mark.parametrize(("units", "ok"), [([5000, 5050], True), ([5000, 5600], False)])
def test_srm_check__threshold__ok_when_p_at_least_threshold(units, ok):
    result = srm_check(units, [1, 1], threshold=0.001)
    assert result["ok"] is ok
    assert isinstance(result["p_value"], float)


@pytest.mark.parametrize(("units", "weights"), [([1, 2], [1]), ([-1, 2], [1, 1]), ([1, 2], [1, -1])])
def test_srm_p_value__invalid_input__raises_value_error(units, weights):
    with pytest.raises(ValueError):
        srm_p_value(units, weights)


def test_srm_p_value__weights_near_the_largest_double__same_as_their_ratio():
    # Experiments stored before weights were bounded may hold 1e308 each: their sum overflows.
    reference = scipy_stats.chisquare([5000, 5210], f_exp=[5105, 5105])
    assert srm_p_value([5000, 5210], [1e308, 1e308]) == pytest.approx(reference.pvalue, rel=1e-10)
