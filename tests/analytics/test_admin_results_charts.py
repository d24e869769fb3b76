"""The results page's charts, on hand-made results documents (no database)."""

import json
import re

import pytest

from analytics.admin.charts import cumulative_lift, lift_axis_range
from analytics.results import MetricResult, Timeseries


def _series(days: list[tuple[float, float, float]]) -> dict:
    """A time series of one treatment: (estimate, ci low, ci high) per day, as fractions."""
    return {
        "metric": "purchase_rate",
        "points": [
            {"date": f"2025-03-{index + 1:02d}", "comparisons": [
                {"variant": "treatment", "relative": {"estimate": estimate, "ci": [low, high]}}]}
            for index, (estimate, low, high) in enumerate(days)
        ],
    }  # fmt: skip


# Day one's interval is a hundred times wider than the settled ones (a handful of users that day).
SETTLING = [(0.9, -5.0, 6.0), (0.2, -0.6, 1.0), (0.08, -0.1, 0.26), (0.05, -0.02, 0.12), (0.04, -0.01, 0.09),
            (0.045, 0.0, 0.09)]  # fmt: skip


def _percent_lines(days: list[tuple[float, float, float]]) -> list[dict]:
    return [{"y": [e * 100 for e, _, _ in days], "lo": [lo * 100 for _, lo, _ in days],
             "hi": [hi * 100 for _, _, hi in days]}]  # fmt: skip


def test_lift_axis_range__day_one_interval_huge__fits_estimates_and_settled_intervals_and_says_clipped():
    low, high, clipped = lift_axis_range(_percent_lines(SETTLING))

    # every estimate (up to day one's +90%) and 0 are inside; day one's −500% to +600% is not
    assert low <= 0 and high >= 90
    assert -20 < low and high < 110
    assert clipped is True


def test_lift_axis_range__intervals_already_narrow__everything_inside_nothing_clipped():
    days = [(0.05, 0.01, 0.09), (0.04, 0.02, 0.06), (0.045, 0.03, 0.06)]

    low, high, clipped = lift_axis_range(_percent_lines(days))

    assert low <= 0 and high >= 9 and clipped is False


def test_lift_axis_range__flat_zero_line__a_visible_margin():
    low, high, _ = lift_axis_range([{"y": [0.0, 0.0], "lo": [None, None], "hi": [None, None]}])
    assert low < 0 < high


def test_cumulative_lift__day_one_interval_huge__axis_from_the_later_days_and_a_note():
    fragment = cumulative_lift(Timeseries.from_dict(_series(SETTLING)),
                               metric=MetricResult.from_dict({"name": "Purchase rate"}), variant_names={},
                               alpha=0.05, div_id="plot")  # fmt: skip

    low, high, _ = lift_axis_range(_percent_lines(SETTLING))
    figure = json.loads(re.search(r"Plotly\.newPlot\(\s*\"plot\",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{\"displaylogo", fragment,
                                  re.S).group(2))  # fmt: skip
    assert figure["yaxis"]["range"] == pytest.approx([low, high])
    assert "The first days' intervals are wider than the chart" in figure["annotations"][0]["text"]
    band_high = json.loads(
        re.search(r"Plotly\.newPlot\(\s*\"plot\",\s*(\[.*?\]),\s*\{", fragment, re.S).group(1)
    )[0]
    assert max(band_high["y"]) <= high  # the band is cut at the edge, the hover keeps the true interval
