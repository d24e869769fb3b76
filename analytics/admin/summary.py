"""Words for a results document: the sentences and labels product managers read. Pure: no ORM, no I/O.

Every function takes the Results document (docs/api.md) (or one of its blocks) as plain data and copes
with ``None`` wherever the document allows it (no interval yet, no p-value under the Bayesian engine,
an error instead of an estimate).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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


def comparison_tone(comparison: Mapping[str, Any], *, higher_is_better: bool) -> Tone:
    """``good`` / ``bad`` when the change is significant in the metric's good / bad direction."""
    direction = comparison.get("direction")
    if direction == "improved":
        return "good"
    if direction == "regressed":
        return "bad"
    if direction is None and comparison.get("significant"):
        estimate = (comparison.get("relative") or {}).get("estimate")
        if estimate is None:
            estimate = (comparison.get("absolute") or {}).get("estimate")
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
    metric: Mapping[str, Any],
    comparison: Mapping[str, Any],
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
    variant = comparison.get("variant") or "?"
    baseline = comparison.get("baseline") or "control"
    who = capitalised(names.get(variant) or variant)
    against = names.get(baseline) or baseline
    what = metric_label(metric.get("name") or metric.get("metric") or "the metric")
    higher_is_better = metric.get("higher_is_better", True) is not False
    tone = comparison_tone(comparison, higher_is_better=higher_is_better)

    def sentence(text: str, tone_: Tone = tone) -> Sentence:
        return Sentence(text=text, tone=tone_, metric=metric.get("metric") or "", variant=variant)

    relative = comparison.get("relative") or {}
    estimate = relative.get("estimate")
    if estimate is None or not math.isfinite(estimate):
        reason = NO_ESTIMATE_REASONS.get(comparison.get("error") or "", "not enough data yet")
        absolute = (comparison.get("absolute") or {}).get("estimate")
        if absolute is not None and comparison.get("error") == "baseline_zero":
            return sentence(
                f"{who} changes {what} by {mean_text(absolute, metric.get('type', ''))} in absolute terms "
                f"({reason})."
            )
        return sentence(f"No estimate yet for {who} against {against} on {what}: {reason}.", "neutral")

    ci = relative.get("ci")
    interval = ""
    if ci and ci[0] is not None and ci[1] is not None:
        interval = f" ({confidence_level(alpha)} CI {percent(ci[0])} to {percent(ci[1])})"
    significant = bool(comparison.get("significant"))
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
            p_raw, p_adjusted = comparison.get("p_value"), comparison.get("p_value_adjusted")
            excludes_zero = bool(ci and ci[0] is not None and ci[1] is not None and (ci[0] > 0 or ci[1] < 0))
            if excludes_zero and p_adjusted is not None and p_adjusted != p_raw:
                heading += " once adjusted for multiple testing"
        text = f"{heading}: {percent(estimate, signed=True)}{interval}"

    if engine == "bayesian":
        chance = chance_text(comparison.get("chance_to_win"))
        if chance:
            text += f", {chance} chance to beat {against}"
        if tone == "bad":
            text += f" ({'lower' if not higher_is_better else 'higher'} is better)"
        return sentence(text + ".")

    p_value = comparison.get("p_value_adjusted")
    adjusted = p_value is not None and p_value != comparison.get("p_value")
    if p_value is None:
        p_value = comparison.get("p_value")
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
    document: Mapping[str, Any], *, variant_names: Mapping[str, str] | None = None
) -> list[Sentence]:
    """One sentence per comparison of every primary metric (every metric when none is primary).

    When the sample-ratio check failed, every sentence says so and none is coloured as a win or a loss:
    the numbers cannot be trusted.
    """
    engine = document.get("engine") or "frequentist"
    srm_failed = (document.get("srm") or {}).get("ok") is False
    alpha = (document.get("analysis") or {}).get("alpha")
    sequential = is_sequential(document)
    blocks: Sequence[Mapping[str, Any]] = document.get("metrics") or []
    primary = [block for block in blocks if block.get("role") == "primary"] or list(blocks)
    sentences = []
    for block in primary:
        if block.get("error"):
            name = metric_label(block.get("name") or block.get("metric") or "")
            sentences.append(
                Sentence(
                    f"Could not analyse {name}: {block['error']}", "neutral", block.get("metric", ""), ""
                )
            )
            continue
        for comparison in block.get("comparisons") or []:
            sentence = comparison_sentence(
                metric=block,
                comparison=comparison,
                engine=engine,
                alpha=alpha,
                variant_names=variant_names,
                sequential=sequential,
            )
            if srm_failed:
                sentence = Sentence(
                    f"{sentence.text} But users are not split as configured (sample ratio mismatch), "
                    "so do not trust this until the cause is fixed.",
                    "neutral",
                    sentence.metric,
                    sentence.variant,
                )
            sentences.append(sentence)
    return sentences


def is_sequential(document: Mapping[str, Any]) -> bool:
    """The frequentist engine with sequential testing: p-values and intervals are always valid."""
    engine = document.get("engine") or "frequentist"
    return engine == "frequentist" and bool((document.get("analysis") or {}).get("sequential"))


# --- tables -------------------------------------------------------------------------------------------
def units_rows(document: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The users table: each variant's users, its share and the share its weight expects."""
    srm = document.get("srm") or {}
    units = srm.get("units") or {}
    weights = srm.get("weights") or {}
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


def metric_rows(document: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The numbers table: per metric, each variant's mean and, for treatments, the comparison."""
    engine = document.get("engine") or "frequentist"
    rows = []
    for block in document.get("metrics") or []:
        comparisons = {c.get("variant"): c for c in block.get("comparisons") or []}
        higher_is_better = block.get("higher_is_better", True) is not False
        variants = []
        for variant in block.get("variants") or []:
            comparison = comparisons.get(variant.get("variant"))
            cell: dict[str, Any] = {
                "name": names.get(variant.get("variant"), variant.get("variant")),
                "units": variant.get("units"),
                "mean": mean_text(variant.get("mean"), block.get("type", "")),
                "comparison": None,
            }
            if comparison is not None:
                relative = comparison.get("relative") or {}
                ci = relative.get("ci")
                cell["comparison"] = {
                    "lift": percent(relative.get("estimate"), signed=True),
                    "ci": f"{percent(ci[0])} to {percent(ci[1])}" if ci else "–",
                    "evidence": (
                        chance_text(comparison.get("chance_to_win")) + " to win"
                        if engine == "bayesian" and comparison.get("chance_to_win") is not None
                        else p_value_text(comparison.get("p_value_adjusted") or comparison.get("p_value"))
                        or "–"
                    ),
                    "tone": comparison_tone(comparison, higher_is_better=higher_is_better),
                    "significant": bool(comparison.get("significant")),
                    "guardrail_violated": bool(comparison.get("guardrail_violated")),
                    "note": (
                        NO_ESTIMATE_REASONS.get(comparison.get("error") or "", "not enough data yet")
                        if relative.get("estimate") is None
                        else ""
                    ),
                }
            variants.append(cell)
        rows.append(
            {
                "name": block.get("name") or block.get("metric"),
                "key": block.get("metric"),
                "role": block.get("role"),
                "type": block.get("type"),
                "higher_is_better": higher_is_better,
                "cuped": block.get("cuped"),
                "error": block.get("error"),
                "variants": variants,
            }
        )
    return rows
