"""Significance and direction of a change, as guardrails read them."""

from __future__ import annotations

import pytest

from analytics.stats import change_direction, is_significant


@pytest.mark.parametrize(
    ("ci", "higher_is_better", "significant", "direction"),
    [
        ([0.01, 0.05], True, True, "improved"),
        ([0.01, 0.05], False, True, "regressed"),
        ([-0.05, -0.01], True, True, "regressed"),
        ([-0.05, -0.01], False, True, "improved"),
        ([-0.01, 0.05], True, False, "inconclusive"),
        ([-0.01, 0.05], False, False, "inconclusive"),
        ([0.0, 0.05], True, False, "inconclusive"),  # touching 0 is not excluding it
        (None, True, False, "inconclusive"),
        ([None, None], False, False, "inconclusive"),
    ],
)
def test_change_direction__interval_and_metric_direction__expected_verdict(
    ci, higher_is_better, significant, direction
):
    assert is_significant(ci) is significant
    assert change_direction(ci, higher_is_better=higher_is_better) == direction
