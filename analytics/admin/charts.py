"""The results page's charts: Plotly figures built from a results document, rendered as HTML fragments.

Plotly's JavaScript ships inside the ``plotly`` Python package (``plotly.offline.get_plotlyjs``), so the
admin serves it itself (no CDN: the machines may have no internet). Each function returns the
``<div>`` + ``<script>`` fragment of one figure, or ``""`` when there is nothing to draw. Values in
the figures' JSON are escaped by Plotly (``<`` becomes ``\\u003c``), and the labels built here are
HTML-escaped because Plotly renders a few tags in text.

Colours follow the metric's direction: green when a change is significantly good for the metric
(up for ``higher_is_better``, down otherwise), red when significantly bad, grey when not significant.

The cumulative-lift chart's y-axis fits the estimates and the intervals of the later days
(``lift_axis_range``): day one's interval, computed from a handful of users, can be a hundred times
wider and would flatten the line; it is cut at the chart's edges, and the chart says so.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from analytics.admin.summary import comparison_sentence, comparison_tone, confidence_level
from analytics.results import MetricResult, ResultsDocument, Timeseries

GOOD, BAD, NEUTRAL = "#198754", "#dc3545", "#6c757d"
TONE_COLOURS = {"good": GOOD, "bad": BAD, "neutral": NEUTRAL}
TONE_LABELS = {
    "good": "significantly better",
    "bad": "significantly worse",
    "neutral": "not significant",
}
VARIANT_COLOURS = ["#417690", "#e08e0b", "#6f42c1", "#20c997", "#d63384", "#0dcaf0"]
ROLE_SYMBOLS = {"primary": "diamond", "secondary": "circle", "guardrail": "square"}
FONT = "-apple-system, 'Segoe UI', system-ui, Roboto, 'Helvetica Neue', Arial, sans-serif"
DAY_MS = 86_400_000
WIDE_EARLY_INTERVALS = 2.5  # early intervals this many times wider than the settled span get cut
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def _layout(**overrides: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "template": "simple_white",
        "font": {"family": FONT, "size": 13},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "margin": {"l": 10, "r": 20, "t": 40, "b": 50},
        "hoverlabel": {"align": "left"},
    }
    layout.update(overrides)
    return layout


def _html(figure: Any, div_id: str) -> str:
    import plotly.io as pio  # imported when a page draws, not when the admin loads

    return pio.to_html(
        figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=PLOT_CONFIG,
        default_height=f"{figure.layout.height}px",
    )


def _name(names: Mapping[str, str], key: str) -> str:
    return names.get(key) or key


def forest_plot(
    document: ResultsDocument, *, variant_names: Mapping[str, str], div_id: str = "forest-plot"
) -> str:
    """Relative lift of every variant on every metric with its interval, one row each."""
    import plotly.graph_objects as go

    rows: list[dict[str, Any]] = []
    for block in document.metrics:
        role = block.role
        for comparison in block.comparisons:
            estimate, ci = comparison.relative.estimate, comparison.relative.ci
            if estimate is None:
                continue
            tone = comparison_tone(comparison, higher_is_better=block.higher_is_better)
            label = f"<b>{html.escape(block.label)}</b>"
            tags = [role]
            if not block.higher_is_better:
                tags.append("lower is better")
            label += f" <span style='font-size:11px'>({', '.join(tags)})</span>"
            label += f"<br>{html.escape(_name(variant_names, comparison.variant))}"
            sentence = comparison_sentence(
                metric=block,
                comparison=comparison,
                engine=document.engine_name,
                alpha=document.alpha,
                variant_names=variant_names,
                sequential=document.is_sequential,
            )
            rows.append(
                {
                    "label": label,
                    "x": estimate * 100,
                    "lo": (estimate - ci[0]) * 100 if ci else 0.0,
                    "hi": (ci[1] - estimate) * 100 if ci else 0.0,
                    "tone": tone,
                    "symbol": ROLE_SYMBOLS.get(role, "circle"),
                    "guardrail": role == "guardrail",
                    "hover": html.escape(sentence.text),
                    "significant": comparison.significant,
                }
            )
    if not rows:
        return ""
    labels = [row["label"] for row in rows]
    figure = go.Figure()
    for tone in ("good", "bad", "neutral"):
        selected = [row for row in rows if row["tone"] == tone]
        if not selected:
            continue
        figure.add_trace(
            go.Scatter(
                x=[row["x"] for row in selected],
                y=[row["label"] for row in selected],
                mode="markers",
                name=TONE_LABELS[tone],
                marker={
                    "color": TONE_COLOURS[tone],
                    "size": [15 if row["significant"] else 11 for row in selected],
                    "symbol": [row["symbol"] for row in selected],
                    "line": {"width": [2 if row["guardrail"] else 0 for row in selected], "color": "#212529"},
                },
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [row["hi"] for row in selected],
                    "arrayminus": [row["lo"] for row in selected],
                    "color": TONE_COLOURS[tone],
                    "thickness": 2.5,
                    "width": 6,
                },
                hovertext=[row["hover"] for row in selected],
                hoverinfo="text",
            )
        )
    figure.add_vline(x=0, line_width=1.5, line_dash="dash", line_color="#888")
    figure.update_layout(
        _layout(
            height=max(220, 90 + 62 * len(rows)),
            xaxis={
                "title": {
                    "text": f"relative lift against the control, {confidence_level(document.alpha)} interval"
                },
                "ticksuffix": "%",
                "zeroline": False,
                "showgrid": True,
                "gridcolor": "rgba(128,128,128,0.15)",
            },
            yaxis={"categoryorder": "array", "categoryarray": labels, "autorange": "reversed", "ticks": ""},
            legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        )
    )
    return _html(figure, div_id)


def lift_axis_range(lines: Sequence[Mapping[str, Sequence[float | None]]]) -> tuple[float, float, bool]:
    """The cumulative-lift chart's y-range, in percent, and whether some interval runs past it.

    ``lines``: each variant's ``{"y", "lo", "hi"}`` per day (estimates and interval bounds). Every
    interval fits when that keeps the chart within ``WIDE_EARLY_INTERVALS`` times the span of 0, the
    estimates and the later half of the days' intervals (the settled ones); otherwise the range is
    that span, with a margin, and the early days' intervals are cut at its edges.
    """
    settled = [0.0]
    everything = [0.0]
    for line in lines:
        middle = len(line["y"]) // 2
        settled += [y for y in line["y"] if y is not None]
        settled += [v for v in (*line["lo"][middle:], *line["hi"][middle:]) if v is not None]
        everything += [v for v in (*line["y"], *line["lo"], *line["hi"]) if v is not None]
    low, high = min(settled), max(settled)
    if max(everything) - min(everything) <= WIDE_EARLY_INTERVALS * (high - low):
        low, high = min(everything), max(everything)
    margin = max((high - low) * 0.08, 0.5)
    low, high = low - margin, high + margin
    clipped = any(not low <= v <= high for v in everything)
    return low, high, clipped


def _clip(values: Sequence[float | None], low: float, high: float) -> list[float | None]:
    return [None if v is None else min(max(v, low), high) for v in values]


def cumulative_lift(
    series: Timeseries,
    *,
    metric: MetricResult | None,
    variant_names: Mapping[str, str],
    alpha: float | None,
    div_id: str,
) -> str:
    """A metric's cumulative relative lift per day (each variant against the control) with its band."""
    import plotly.graph_objects as go

    by_variant: dict[str, dict[str, list[Any]]] = {}
    for point in series.points:
        for comparison in point.comparisons:
            estimate, ci = comparison.relative.estimate, comparison.relative.ci
            if estimate is None or point.date is None:
                continue
            line = by_variant.setdefault(comparison.variant, {"date": [], "y": [], "lo": [], "hi": []})
            line["date"].append(point.date.isoformat())
            line["y"].append(estimate * 100)
            line["lo"].append(ci[0] * 100 if ci else None)
            line["hi"].append(ci[1] * 100 if ci else None)
    if not by_variant:
        return ""
    days = {date for line in by_variant.values() for date in line["date"]}
    low, high, clipped = lift_axis_range(list(by_variant.values()))
    figure = go.Figure()
    for index, (variant, line) in enumerate(by_variant.items()):
        colour = VARIANT_COLOURS[(index + 1) % len(VARIANT_COLOURS)]
        name = html.escape(_name(variant_names, variant))
        figure.add_trace(
            go.Scatter(
                x=line["date"],
                y=_clip(line["hi"], low, high),
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
                legendgroup=variant,
            )  # fmt: skip
        )
        figure.add_trace(
            go.Scatter(
                x=line["date"],
                y=_clip(line["lo"], low, high),
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=_transparent(colour),
                name=f"{name}: {confidence_level(alpha)} interval",
                hoverinfo="skip",
                legendgroup=variant,
            )
        )
        figure.add_trace(
            go.Scatter(
                x=line["date"],
                y=line["y"],
                mode="lines+markers",
                line={"color": colour, "width": 2.5},
                name=f"{name}: lift",
                legendgroup=variant,
                customdata=list(zip(line["lo"], line["hi"], strict=True)),
                hovertemplate="%{x}: %{y:+.1f}% (%{customdata[0]:.1f}% to %{customdata[1]:.1f}%)<extra></extra>",
            )
        )
    figure.add_hline(y=0, line_width=1.5, line_dash="dash", line_color="#888")
    if clipped:
        figure.add_annotation(
            text="The first days' intervals are wider than the chart: cut at its edges (hover for the values).",
            xref="paper", yref="paper", x=0, y=1.0, xanchor="left", yanchor="bottom", showarrow=False,
            font={"size": 11, "color": NEUTRAL},
        )  # fmt: skip
    title = html.escape((metric.name if metric is not None else "") or series.metric)
    figure.update_layout(
        _layout(
            height=320,
            title={"text": f"{title}: cumulative lift against the control", "font": {"size": 14}},
            yaxis={
                "ticksuffix": "%",
                "showgrid": True,
                "gridcolor": "rgba(128,128,128,0.15)",
                "range": [low, high],
            },
            # One tick a day for short experiments (Plotly would tick every 12 hours), automatic beyond.
            xaxis={"type": "date", "tickformat": "%b %d", **({"dtick": DAY_MS} if len(days) <= 16 else {})},
            legend={"orientation": "h", "y": -0.18},
            margin={"l": 50, "r": 20, "t": 50, "b": 40},
        )
    )
    return _html(figure, div_id)


def units_per_variant(
    document: ResultsDocument, *, variant_names: Mapping[str, str], div_id: str = "units-plot"
) -> str:
    """Users per variant against what the configured weights expect (the sample-ratio check)."""
    import plotly.graph_objects as go

    srm = document.srm
    if srm is None or not srm.units or not sum(srm.units.values()):
        return ""
    units, weights = srm.units, srm.weights
    keys = list(units)
    total = sum(units.values())
    weight_total = sum(weights.get(key, 0) for key in keys)
    names = [html.escape(_name(variant_names, key)) for key in keys]
    ok = srm.ok
    figure = go.Figure(
        go.Bar(
            x=names,
            y=[units[key] for key in keys],
            marker_color=[VARIANT_COLOURS[i % len(VARIANT_COLOURS)] for i in range(len(keys))],
            text=[f"{units[key]:,} ({units[key] / total:.1%})" for key in keys],
            textposition="inside",
            insidetextanchor="start",
            name="users",
            hovertemplate="%{x}: %{y:,} users<extra></extra>",
        )
    )
    if weight_total:
        figure.add_trace(
            go.Scatter(
                x=names,
                y=[total * weights.get(key, 0) / weight_total for key in keys],
                mode="markers",
                marker={
                    "symbol": "line-ew",
                    "size": 60,
                    "line": {"width": 3, "color": BAD if not ok else "#212529"},
                },
                name="expected from the weights",
                hovertemplate="expected %{y:,.0f}<extra></extra>",
            )
        )
    figure.update_layout(
        _layout(
            height=300,
            title={"text": "Users per variant", "font": {"size": 14}},
            yaxis={"showgrid": True, "gridcolor": "rgba(128,128,128,0.15)", "tickformat": ","},
            legend={"orientation": "h", "y": -0.15},
            bargap=0.45,
            margin={"l": 60, "r": 20, "t": 50, "b": 40},
        )
    )
    return _html(figure, div_id)


def timeseries_plots(document: ResultsDocument, *, variant_names: Mapping[str, str]) -> list[str]:
    """One cumulative-lift chart per metric with a time series (the primary metrics)."""
    plots = []
    for index, series in enumerate(document.timeseries):
        fragment = cumulative_lift(
            series,
            metric=document.metric(series.metric),
            variant_names=variant_names,
            alpha=document.alpha,
            div_id=f"timeseries-plot-{index}",
        )
        if fragment:
            plots.append(fragment)
    return plots


def _transparent(colour: str, alpha: float = 0.18) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def dimension_plot(
    document: ResultsDocument,
    *,
    metric: str,
    variant_names: Mapping[str, str],
    div_id: str = "dimension-plot",
) -> str:
    """One metric's lift per level of the document's dimension breakdown: the forest plot with one
    row per level and variant (its metric block, named after the level)."""
    import dataclasses

    breakdown = document.dimension
    if breakdown is None:
        return ""
    blocks = []
    for level in breakdown.levels:
        block = level.metric(metric)
        if block is not None:
            blocks.append(dataclasses.replace(block, name=f"{level.level} ({level.units:,} users)"))
    return forest_plot(dataclasses.replace(document, metrics=tuple(blocks)), variant_names=variant_names,
                       div_id=div_id)  # fmt: skip
