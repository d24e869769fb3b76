"""The results page's sentences and labels, on hand-made results documents (no database)."""

import datetime as dt

import pytest

from analytics.admin.summary import (
    ago,
    chance_text,
    comparison_sentence,
    mean_text,
    p_value_text,
    percent,
    primary_sentences,
    refresh_how,
)
from analytics.results import Comparison, MetricResult, RefreshInfo, ResultsDocument

NAMES = {"control": "Blue button", "treatment": "Green button"}


def _sentence(*, metric: dict, comparison: dict, **options):
    """The sentence of a hand-made metric block and comparison, read as the typed document's parts."""
    return comparison_sentence(
        metric=MetricResult.from_dict(metric), comparison=Comparison.from_dict(comparison), **options
    )


def _metric(**overrides) -> dict:
    return {"metric": "purchase_rate", "name": "Purchase rate", "type": "binomial", "role": "primary",
            "higher_is_better": True, **overrides}  # fmt: skip


def _comparison(estimate, ci, **overrides) -> dict:
    return {"variant": "treatment", "baseline": "control", "relative": {"estimate": estimate, "ci": ci},
            "absolute": {"estimate": None, "ci": None}, "p_value": None, "p_value_adjusted": None,
            "significant": False, "direction": "inconclusive", "chance_to_win": None, "risk": None,
            "error": None, **overrides}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (0.041, {}, "4.1%"),
        (0.041, {"signed": True}, "+4.1%"),
        (-0.012, {}, "\u22121.2%"),
        (-0.0001, {}, "0.0%"),
        (None, {}, "–"),
        (float("nan"), {}, "–"),
    ],
)
def test_percent__values__formatted(value, kwargs, expected):
    assert percent(value, **kwargs) == expected


@pytest.mark.parametrize(
    ("p_value", "expected"),
    [(0.0000001, "p < 0.001"), (0.0032, "p = 0.0032"), (0.047, "p = 0.05"), (0.47, "p = 0.47"),
     (0.999, "p = 1"), (None, "")],
)  # fmt: skip
def test_p_value_text__values__readable(p_value, expected):
    assert p_value_text(p_value) == expected


@pytest.mark.parametrize(
    ("chance", "expected"),
    [(0.983, "98%"), (0.9996, ">99.9%"), (0.0001, "<0.1%"), (0.995, "99.5%"), (None, "")],
)
def test_chance_text__values__readable(chance, expected):
    assert chance_text(chance) == expected


def test_mean_text__binomial_and_sum__rate_or_number():
    assert mean_text(0.1013, "binomial") == "10.13%"
    assert mean_text(58.327, "sum") == "58.33"
    assert mean_text(10.0, "sum") == "10.00"
    assert mean_text(1234.5, "sum") == "1,234"
    assert mean_text(0.3456, "count") == "0.346"
    assert mean_text(None, "sum") == "–"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.7e308, "1.70 × 10³⁰⁸"),
        (-3.4e304, "\u22123.40 × 10³⁰⁴"),
        (999_999_999.0, "999,999,999"),
        (2.5e9, "2.50 × 10⁹"),
        (-12.345, "\u221212.35"),
        (0.000123, "0.000123"),
        (1e-9, "1.00 × 10⁻⁹"),
    ],
)
def test_mean_text__huge_tiny_and_negative__a_dozen_characters_at_most(value, expected):
    assert mean_text(value, "sum") == expected
    assert len(mean_text(value, "sum")) <= 13


def test_percent__huge_lift__power_of_ten_not_hundreds_of_digits():
    assert percent(1.7e300, signed=True) == "+1.70 × 10³⁰²%"
    assert percent(123.456) == "12,345.6%"


def test_comparison_sentence__non_finite__says_the_values_are_too_large():
    sentence = _sentence(
        metric=_metric(type="sum"),
        comparison=_comparison(None, None, error="non_finite"),
        engine="frequentist",
    )
    assert "some event values are too large to add up" in sentence.text
    assert "varied" not in sentence.text


def test_comparison_sentence__frequentist_significant__ci_p_value_and_improvement():
    comparison = _comparison(0.041, [0.012, 0.070], p_value=0.003, p_value_adjusted=0.003, significant=True,
                             direction="improved")  # fmt: skip
    sentence = _sentence(
        metric=_metric(), comparison=comparison, engine="frequentist", alpha=0.05, variant_names=NAMES
    )
    assert sentence.text == (
        "Green button raises purchase rate by 4.1% (95% CI 1.2% to 7.0%), p = 0.003: a significant improvement."
    )
    assert sentence.tone == "good"


def test_comparison_sentence__frequentist_not_significant__no_detectable_difference_not_a_change():
    comparison = _comparison(-0.008, [-0.031, 0.015], p_value=0.47, p_value_adjusted=0.47)
    sentence = _sentence(metric=_metric(), comparison=comparison, engine="frequentist", alpha=0.1)
    assert sentence.text == (
        "No detectable difference in purchase rate between Treatment and control: "
        "\u22120.8% (90% CI \u22123.1% to 1.5%), p = 0.47."
    )
    assert sentence.tone == "neutral"


def test_comparison_sentence__a_a_test_not_significant__never_reads_as_a_win():
    # The demo's A/A test once read "A again raises purchase rate by 0.8% ...: not significant."
    comparison = _comparison(0.008, [-0.021, 0.037], p_value=0.62, p_value_adjusted=0.62)
    sentence = _sentence(
        metric=_metric(), comparison=comparison, engine="frequentist",
        variant_names={"control": "A", "treatment": "A again"},
    )  # fmt: skip
    assert sentence.text == (
        "No detectable difference in purchase rate between A again and A: +0.8% (95% CI \u22122.1% to 3.7%), "
        "p = 0.62."
    )
    assert "raises" not in sentence.text and "lowers" not in sentence.text


def test_comparison_sentence__sequential__says_the_p_value_is_always_valid():
    comparison = _comparison(0.008, [-0.05, 0.07], p_value=1.0, p_value_adjusted=1.0)
    sentence = _sentence(metric=_metric(), comparison=comparison, engine="frequentist", sequential=True)
    assert sentence.text.endswith("p = 1 (sequential test, always valid).")

    significant = _comparison(0.1, [0.04, 0.16], p_value=0.001, p_value_adjusted=0.003, significant=True,
                              direction="improved")  # fmt: skip
    sentence = _sentence(metric=_metric(), comparison=significant, engine="frequentist", sequential=True)
    assert sentence.text.endswith(
        "p = 0.003 (sequential test, always valid; adjusted for multiple testing): a significant improvement."
    )


def test_comparison_sentence__interval_excludes_zero_but_adjusted_p_too_high__says_adjusted():
    comparison = _comparison(0.129, [0.012, 0.247], p_value=0.02, p_value_adjusted=0.05)
    sentence = _sentence(metric=_metric(), comparison=comparison, engine="frequentist")
    assert sentence.text.startswith(
        "No detectable difference in purchase rate between Treatment and control once adjusted for multiple "
        "testing: +12.9% (95% CI 1.2% to 24.7%), p = 0.05 (adjusted for multiple testing)"
    )


def test_primary_sentences__sequential_document__sentences_say_sequential():
    document = {"engine": "frequentist", "analysis": {"alpha": 0.05, "sequential": True},
                "metrics": [{**_metric(), "comparisons": [_comparison(0.01, [-0.1, 0.12], p_value=1.0,
                                                                      p_value_adjusted=1.0)]}]}  # fmt: skip
    assert "(sequential test, always valid)" in primary_sentences(ResultsDocument.from_dict(document))[0].text
    document["analysis"]["sequential"] = False
    assert "sequential" not in primary_sentences(ResultsDocument.from_dict(document))[0].text


def test_comparison_sentence__adjusted_p_value__named_as_adjusted():
    comparison = _comparison(0.05, [0.01, 0.09], p_value=0.01, p_value_adjusted=0.03, significant=True,
                             direction="improved")  # fmt: skip
    sentence = _sentence(metric=_metric(), comparison=comparison, engine="frequentist")
    assert "p = 0.03 (adjusted for multiple testing)" in sentence.text


def test_comparison_sentence__bayesian__chance_to_beat_control():
    comparison = _comparison(
        0.041, [0.012, 0.070], chance_to_win=0.983, significant=True, direction="improved"
    )
    sentence = _sentence(
        metric=_metric(), comparison=comparison, engine="bayesian", alpha=0.05, variant_names=NAMES
    )
    assert sentence.text == (
        "Green button raises purchase rate by 4.1% (95% CI 1.2% to 7.0%), 98% chance to beat Blue button."
    )
    assert sentence.tone == "good"


def test_comparison_sentence__lower_is_better_went_up__worse_and_red():
    metric = _metric(metric="errors", name="Errors per user", type="count", higher_is_better=False,
                     role="guardrail")  # fmt: skip
    comparison = _comparison(0.12, [0.05, 0.19], p_value=0.002, p_value_adjusted=0.002, significant=True,
                             direction="regressed")  # fmt: skip
    sentence = _sentence(metric=metric, comparison=comparison, engine="frequentist")
    assert sentence.text == (
        "Treatment raises errors per user by 12.0% (95% CI 5.0% to 19.0%), p = 0.002: "
        "significantly worse (lower is better)."
    )
    assert sentence.tone == "bad"


def test_comparison_sentence__lower_is_better_went_down_without_direction__good():
    # Given a document without "direction" (an older payload): the sign and higher_is_better decide
    metric = _metric(name="Errors per user", higher_is_better=False)
    comparison = _comparison(-0.2, [-0.3, -0.1], significant=True, direction=None, p_value=0.001)
    sentence = _sentence(metric=metric, comparison=comparison, engine="frequentist")
    assert sentence.tone == "good"
    assert sentence.text.startswith("Treatment lowers errors per user by 20.0%")


@pytest.mark.parametrize(
    ("comparison", "fragment"),
    [
        (_comparison(None, None, error="too_few_units"), "fewer than 2 users in a variant so far"),
        (_comparison(None, None, error="zero_variance"), "has not varied"),
        (_comparison(None, None), "not enough data yet"),
        ({"variant": "treatment", "baseline": "control", "relative": None}, "not enough data yet"),
    ],
)
def test_comparison_sentence__no_estimate__says_why(comparison, fragment):
    sentence = _sentence(metric=_metric(), comparison=comparison, engine="frequentist")
    assert fragment in sentence.text
    assert sentence.tone == "neutral"


def test_comparison_sentence__estimate_without_interval_or_p_value__no_none_in_text():
    comparison = _comparison(0.02, None)
    sentence = _sentence(metric=_metric(), comparison=comparison, engine="bayesian")
    assert sentence.text == "No clear difference in purchase rate between Treatment and control yet: +2.0%."
    assert "None" not in sentence.text


def test_comparison_sentence__baseline_zero__absolute_change():
    comparison = _comparison(None, None, error="baseline_zero", absolute={"estimate": 0.5, "ci": [0.1, 0.9]})
    sentence = _sentence(metric=_metric(type="count"), comparison=comparison, engine="frequentist")
    assert "changes purchase rate by 0.500 in absolute terms" in sentence.text


def test_ago__recent_and_older__just_now_or_timesince():
    now = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC)
    assert ago(now - dt.timedelta(seconds=20), now) == "just now"
    assert ago(now - dt.timedelta(minutes=3), now) == "3\xa0minutes ago"
    assert ago(None) == ""


def test_primary_sentences__primary_only_and_srm_failure__one_neutral_warning_each():
    document = {
        "engine": "frequentist",
        "analysis": {"alpha": 0.05},
        "srm": {"ok": False, "p_value": 1e-9},
        "metrics": [
            {
                **_metric(),
                "comparisons": [
                    _comparison(
                        0.1,
                        [0.05, 0.15],
                        significant=True,
                        direction="improved",
                        p_value=0.001,
                        p_value_adjusted=0.001,
                    )
                ],
            },  # fmt: skip
            {
                **_metric(metric="revenue", name="Revenue", role="secondary"),
                "comparisons": [_comparison(0.1, None)],
            },
        ],
    }
    sentences = primary_sentences(ResultsDocument.from_dict(document), variant_names=NAMES)
    assert len(sentences) == 1
    assert "sample ratio mismatch" in sentences[0].text
    assert sentences[0].tone == "neutral"


def test_primary_sentences__no_primary_and_metric_error__every_metric_and_the_error():
    document = {
        "engine": "bayesian",
        "metrics": [
            {
                **_metric(role="secondary"),
                "comparisons": [_comparison(0.01, [-0.02, 0.04], chance_to_win=0.7)],
            },
            {
                **_metric(metric="aov", name="AOV", role="secondary"),
                "comparisons": [],
                "error": "zero variance",
            },
        ],
    }
    texts = [s.text for s in primary_sentences(ResultsDocument.from_dict(document))]
    assert texts == [
        "No clear difference in purchase rate between Treatment and control yet: +1.0% (95% CI \u22122.0% to "
        "4.0%), 70% chance to beat control.",
        "Could not analyse AOV: zero variance",
    ]


WATERMARK = dt.datetime(2026, 12, 7, 15, 59, 3, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "kind, watermark, expected",
    [
        ("incremental", WATERMARK, "Incremental refresh: only the users that new data touched were recomputed "
         "(the same numbers as a full refresh). Every exposure and event received by 2026-12-07 15:59 UTC is in."),
        ("full", WATERMARK, "Full refresh from every event, keeping each user's state for the incremental "
         "refreshes that follow. Every exposure and event received by 2026-12-07 15:59 UTC is in."),
        ("full", None, "Full refresh from every event."),
        (None, None, ""),
    ],
)  # fmt: skip
def test_refresh_how__kinds__say_how_and_up_to_when(kind, watermark, expected):
    assert refresh_how(RefreshInfo(status="ok", kind=kind, watermark=watermark)) == expected
