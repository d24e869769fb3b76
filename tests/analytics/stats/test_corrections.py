"""Multiple-testing corrections against statsmodels' multipletests."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from analytics.stats import adjust_p_values, benjamini_hochberg, holm
from tests.analytics.stats.simulation import seeded

RNG = seeded(123)

P_VALUE_SETS = [
    pytest.param([0.01], id="single"),
    pytest.param([0.01, 0.04, 0.03, 0.005, 0.2], id="classic"),
    pytest.param([0.02, 0.02, 0.02, 0.5, 0.5], id="ties"),
    pytest.param([0.9, 0.95, 0.99, 1.0], id="all_large_capped_at_1"),
    pytest.param(list(RNG.uniform(0, 1, 40)), id="uniform_40"),
    pytest.param(list(RNG.beta(0.2, 5, 25)), id="many_small_25"),
    pytest.param([1e-12, 3e-8, 0.049, 0.051], id="tiny"),
]


@pytest.mark.parametrize(
    ("ours", "method"),
    [pytest.param(holm, "holm", id="holm"), pytest.param(benjamini_hochberg, "fdr_bh", id="bh")],
)
@pytest.mark.parametrize("p_values", P_VALUE_SETS)
def test_correction__p_values__equals_statsmodels_multipletests(ours, method, p_values):
    _, expected, _, _ = multipletests(p_values, method=method)
    np.testing.assert_allclose(ours(p_values), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("correction", "method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_p_values__none_entries__kept_in_place_and_not_counted(correction, method):
    p_values = [0.01, None, 0.04, 0.03, None]
    _, expected, _, _ = multipletests([0.01, 0.04, 0.03], method=method)
    adjusted = adjust_p_values(p_values, correction)
    assert adjusted[1] is None and adjusted[4] is None
    np.testing.assert_allclose([adjusted[0], adjusted[2], adjusted[3]], expected, rtol=1e-12)


def test_adjust_p_values__correction_none__unchanged():
    assert adjust_p_values([0.2, None, 0.01], "none") == [0.2, None, 0.01]


def test_adjust_p_values__empty__empty():
    assert adjust_p_values([], "holm") == []


def test_adjust_p_values__unknown_correction__raises_value_error():
    with pytest.raises(ValueError):
        adjust_p_values([0.1], "bonferroni")  # type: ignore[arg-type]
