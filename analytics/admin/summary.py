"""Words for a results document: the sentences and labels product managers read. Pure: no ORM, no I/O.

Every function takes the typed Results document (``analytics.results``) or one of its blocks, and copes
with ``None`` wherever the document allows it (no interval yet, no p-value under the Bayesian engine,
an error instead of an estimate).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from analytics.results import Comparison, MetricResult, RefreshInfo, ResultsDocument

Tone = Literal["good", "bad", "neutral"]

MINUS = "\u2212"  # a real minus sign: "−1.2%" reads better than "-1.2%"

# Why a comparison has no estimate (``analytics.stats.analysis``), in a product manager's words.
NO_ESTIMATE_REASONS = {
    "too_few_units": "fewer than 2 users in a variant so far",
    "zero_variance": "the metric has not varied between users yet",
    "baseline_zero": "the baseline is 0, so a relative change is undefined",
    "non_finite": "some event values are too large to add up (check the values your events send)",
}
SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
LARGEST_PLAIN = 1e9  # from here on a number is written as a power of ten: "1.70 × 10³⁰⁸"
SMALLEST_PLAIN = 1e-4


def scientific(value: float, digits: int = 3) -> str:
    """``1.7e308`` → ``"1.70 × 10³⁰⁸"``: a number of any size in a dozen characters."""
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    sign = MINUS if mantissa.startswith("-") else ""
    return f"{sign}{mantissa.lstrip('-')} × 10{str(int(exponent)).translate(SUPERSCRIPTS)}"


def number_text(value: float) -> str:
    """A number for a table: thousands separators up to a billion, sensible decimals below, a power of
    ten beyond (so no value can print as 300 digits and push the other columns off the screen)."""
    magnitude = abs(value)
    if magnitude >= LARGEST_PLAIN or 0 < magnitude < SMALLEST_PLAIN:
        return scientific(value)
    if magnitude >= 1000:
        text = f"{magnitude:,.0f}"
    elif magnitude >= 100:
        text = f"{magnitude:.1f}"
    elif magnitude >= 1 or magnitude == 0:
        text = f"{magnitude:.2f}"
    elif magnitude >= 0.001:
        text = f"{magnitude:.3f}"
    else:
        text = f"{magnitude:.3g}"  # three significant digits, not "0.000"
    return (MINUS + text) if value < 0 and text.strip("0.,") else text


def percent(value: float | None, *, signed: bool = False, decimals: int = 1) -> str:
    """``0.041`` → ``"4.1%"`` (``"+4.1%"`` when ``signed``); ``"–"`` for None or not finite."""
    if value is None or not math.isfinite(value):
        return "–"
    scaled = value * 100
    if round(scaled, decimals) == 0:
        scaled = 0.0  # no "−0.0%"
    if abs(scaled) >= LARGEST_PLAIN:  # a lift of a billion percent: still a dozen characters
        text = scientific(abs(scaled)) + "%"
    else:
        text = f"{abs(scaled):,.{decimals}f}%"
    if scaled < 0:
        return MINUS + text
    return ("+" + text) if signed and scaled > 0 else text


SEQUENTIAL_NOTE = (
    "Sequential testing: the intervals and p-values stay valid however often you look, so the "
    "experiment can stop as soon as a result is significant. The price is width: they are wider than a "
    "fixed-horizon test's, and the always-valid p-value stays at 1 until the evidence is strong."
)


def p_value_text(p_value: float | None) -> str:
    """``"p = 0.012"``, ``"p < 0.001"``; empty for None."""
    if p_value is None or not math.isfinite(p_value):
        return ""
    if p_value < 0.001:
        return "p < 0.001"
    if p_value >= 0.995:
        return "p = 1"
    return f"p = {p_value:.2g}" if p_value < 0.01 else f"p = {p_value:.2f}"


def chance_text(chance: float | None) -> str:
    """``0.983`` → ``"98%"``; extremes as ``">99.9%"`` / ``"<0.1%"``; empty for None."""
    if chance is None or not math.isfinite(chance):
        return ""
    if chance > 0.999:
        return ">99.9%"
    if chance < 0.001:
        return "<0.1%"
    if 0.01 <= chance <= 0.99:
        return f"{chance * 100:.0f}%"
    return f"{chance * 100:.1f}%"


def confidence_level(alpha: float | None) -> str:
    """``0.05`` → ``"95%"``, ``0.1`` → ``"90%"``, ``0.001`` → ``"99.9%"``."""
    level = (1 - (0.05 if alpha is None else alpha)) * 100
    return f"{level:.0f}%" if abs(level - round(level)) < 1e-9 else f"{level:.1f}%"


def metric_label(name: str) -> str:
    """A metric's name inside a sentence: "Purchase rate" → "purchase rate"; "CTR" stays."""
    if len(name) > 1 and name[0].isupper() and name[1].islower():
        return name[0].lower() + name[1:]
    return name


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def mean_text(value: float | None, metric_type: str) -> str:
    """A variant's mean: a rate in percent for conversions, else a number with sensible decimals."""
    if value is None or not math.isfinite(value):
        return "–"
    if metric_type == "binomial":
        return percent(value, decimals=2)
    return number_text(value)


def ago(moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """``"just now"``, ``"3 minutes ago"``, ``"2 days, 4 hours ago"``; empty for None."""
    if moment is None:
        return ""
    from django.utils.timesince import timesince  # a pure function of its two arguments

    now = now or dt.datetime.now(dt.UTC)
    if (now - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment, now)} ago"


def refresh_how(refresh: RefreshInfo) -> str:
    """How the shown results were computed, in a sentence (the freshness line's tooltip): incremental
    or full, and up to when every exposure and event is in them."""
    if refresh.kind == "incremental":
        how = "Incremental refresh: only the users that new data touched were recomputed (the same numbers as a full refresh)."
    elif refresh.kind == "full" and refresh.watermark is not None:
        how = "Full refresh from every event, keeping each user's state for the incremental refreshes that follow."
    elif refresh.kind == "full":
        how = "Full refresh from every event."
    else:
        return ""
    if refresh.watermark is not None:
        how += f" Every exposure and event received by {refresh.watermark.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC is in."
    return how


def comparison_tone(comparison: Comparison, *, higher_is_better: bool) -> Tone:
    """``good`` / ``bad`` when the change is significant in the metric's good / bad direction."""
    direction = comparison.direction
    if direction == "improved":
        return "good"
    if direction == "regressed":
        return "bad"
    if direction is None and comparison.significant:  # a document from before ``direction`` existed
        estimate = comparison.relative.estimate
        if estimate is None:
            estimate = comparison.absolute.estimate
        if estimate:
            return "good" if (estimate > 0) == higher_is_better else "bad"
    return "neutral"


@dataclass(frozen=True)
class Sentence:
    """One line of the summary, and how it should look (green, red or plain)."""

    text: str
    tone: Tone
    metric: str
    variant: str


def comparison_sentence(
    *,
    metric: MetricResult,
    comparison: Comparison,
    engine: str,
    alpha: float | None = 0.05,
    variant_names: Mapping[str, str] | None = None,
    sequential: bool = False,
) -> Sentence:
    """The comparison in one sentence, e.g. "Green button raises purchase rate by 4.1% (95% CI 1.2% to
    7.0%), p = 0.003: a significant improvement." (frequentist) or "..., 98% chance to beat Blue button."
    (Bayesian). A change that is not significant is not read as one: "No detectable difference in
    purchase rate between A again and A: +0.8% (95% CI −2.1% to 3.7%), p = 0.62." ``sequential``: the
    p-value is the always-valid one of a sequential test, and the sentence says so. Respects
    ``higher_is_better``; says plainly when there is no estimate yet."""
    names = variant_names or {}
    variant = comparison.variant
    baseline = comparison.baseline
    who = capitalised(names.get(variant) or variant)
    against = names.get(baseline) or baseline
    what = metric_label(metric.label or "the metric")
    higher_is_better = metric.higher_is_better
    tone = comparison_tone(comparison, higher_is_better=higher_is_better)

    def sentence(text: str, tone_: Tone = tone) -> Sentence:
        return Sentence(text=text, tone=tone_, metric=metric.metric, variant=variant)

    estimate = comparison.relative.estimate
    if estimate is None or not math.isfinite(estimate):
        reason = NO_ESTIMATE_REASONS.get(comparison.error or "", "not enough data yet")
        absolute = comparison.absolute.estimate
        if absolute is not None and comparison.error == "baseline_zero":
            return sentence(
                f"{who} changes {what} by {mean_text(absolute, metric.type)} in absolute terms ({reason})."
            )
        return sentence(f"No estimate yet for {who} against {against} on {what}: {reason}.", "neutral")

    ci = comparison.relative.ci
    interval = ""
    if ci and ci[0] is not None and ci[1] is not None:
        interval = f" ({confidence_level(alpha)} CI {percent(ci[0])} to {percent(ci[1])})"
    significant = comparison.significant
    if significant:
        if estimate > 0:
            change = f"raises {what} by {percent(estimate)}"
        elif estimate < 0:
            change = f"lowers {what} by {percent(-estimate)}"
        else:
            change = f"leaves {what} unchanged"
        text = f"{who} {change}{interval}"
    else:
        # The estimate is reported, but not as a change: its interval holds 0 and values both ways
        # (or, its interval being unadjusted, the p-value adjusted for multiple testing says so).
        if engine == "bayesian":
            heading = f"No clear difference in {what} between {who} and {against} yet"
        else:
            heading = f"No detectable difference in {what} between {who} and {against}"
            p_raw, p_adjusted = comparison.p_value, comparison.p_value_adjusted
            excludes_zero = bool(ci and ci[0] is not None and ci[1] is not None and (ci[0] > 0 or ci[1] < 0))
            if excludes_zero and p_adjusted is not None and p_adjusted != p_raw:
                heading += " once adjusted for multiple testing"
        text = f"{heading}: {percent(estimate, signed=True)}{interval}"

    if engine == "bayesian":
        chance = chance_text(comparison.chance_to_win)
        if chance:
            text += f", {chance} chance to beat {against}"
        if tone == "bad":
            text += f" ({'lower' if not higher_is_better else 'higher'} is better)"
        return sentence(text + ".")

    p_value = comparison.p_value_adjusted
    adjusted = p_value is not None and p_value != comparison.p_value
    if p_value is None:
        p_value = comparison.p_value
    p_text = p_value_text(p_value)
    notes = (["sequential test, always valid"] if sequential else []) + (
        ["adjusted for multiple testing"] if adjusted else []
    )
    if p_text:
        text += f", {p_text}" + (f" ({'; '.join(notes)})" if notes else "")
    if not significant:
        return sentence(f"{text}.")
    if tone == "good":
        verdict = "a significant improvement"
    elif tone == "bad":
        verdict = f"significantly worse ({'lower' if not higher_is_better else 'higher'} is better)"
    else:
        verdict = "significant"
    return sentence(f"{text}: {verdict}.")


def primary_sentences(
    document: ResultsDocument, *, variant_names: Mapping[str, str] | None = None
) -> list[Sentence]:
    """One sentence per comparison of every primary metric (every metric when none is primary).

    When the sample-ratio check failed, every sentence says so and none is coloured as a win or a loss:
    the numbers cannot be trusted.
    """
    primary = [block for block in document.metrics if block.role == "primary"] or list(document.metrics)
    sentences = []
    for block in primary:
        if block.error:
            name = metric_label(block.label)
            sentences.append(
                Sentence(f"Could not analyse {name}: {block.error}", "neutral", block.metric, "")
            )
            continue
        for comparison in block.comparisons:
            sentence = comparison_sentence(
                metric=block,
                comparison=comparison,
                engine=document.engine_name,
                alpha=document.alpha,
                variant_names=variant_names,
                sequential=document.is_sequential,
            )
            if document.srm_failed:
                sentence = Sentence(
                    f"{sentence.text} But users are not split as configured (sample ratio mismatch), "
                    "so do not trust this until the cause is fixed.",
                    "neutral",
                    sentence.metric,
                    sentence.variant,
                )
            sentences.append(sentence)
    return sentences


# --- tables -------------------------------------------------------------------------------------------
def units_rows(document: ResultsDocument, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The users table: each variant's users, its share and the share its weight expects."""
    if document.srm is None:
        return []
    units, weights = document.srm.units, document.srm.weights
    total, weight_total = sum(units.values()), sum(weights.values())
    return [
        {
            "variant": names.get(key, key),
            "key": key,
            "units": count,
            "share": percent(count / total) if total else "–",
            "expected": percent(weights.get(key, 0) / weight_total) if weight_total else "–",
        }
        for key, count in units.items()
    ]


def metric_rows(document: ResultsDocument, names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The numbers table: per metric, each variant's mean and, for treatments, the comparison."""
    engine = document.engine_name
    rows = []
    for block in document.metrics:
        variants = []
        for variant in block.variants:
            comparison = block.comparison_of(variant.variant)
            cell: dict[str, Any] = {
                "name": names.get(variant.variant, variant.variant),
                "units": variant.units,
                "mean": mean_text(variant.mean, block.type),
                "comparison": None,
            }
            if comparison is not None:
                relative = comparison.relative
                ci = relative.ci
                cell["comparison"] = {
                    "lift": percent(relative.estimate, signed=True),
                    "ci": f"{percent(ci[0])} to {percent(ci[1])}" if ci else "–",
                    "evidence": (
                        chance_text(comparison.chance_to_win) + " to win"
                        if engine == "bayesian" and comparison.chance_to_win is not None
                        else p_value_text(comparison.p_value_adjusted or comparison.p_value) or "–"
                    ),
                    "tone": comparison_tone(comparison, higher_is_better=block.higher_is_better),
                    "significant": comparison.significant,
                    "guardrail_violated": bool(comparison.guardrail_violated),
                    "note": (
                        NO_ESTIMATE_REASONS.get(comparison.error or "", "not enough data yet")
                        if relative.estimate is None
                        else ""
                    ),
                }
            variants.append(cell)
        rows.append(
            {
                "name": block.label,
                "key": block.metric,
                "role": block.role,
                "type": block.type,
                "higher_is_better": block.higher_is_better,
                "cuped": block.cuped,
                "quantile": block.type == "quantile",
                "cap": "" if block.cap_used is None else number_text(block.cap_used),
                "error": block.error,
                "variants": variants,
            }
        )
    return rows
