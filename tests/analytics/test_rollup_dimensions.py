"""Dimension breakdowns (analytics.rollup.dimensions), on both ClickHouse backends.

The reference for a level is the analysis of that subset alone: the exposures of the level's units
written again as an experiment of their own (levels decided in Python from the generated rows, never
from the breakdown's output) and rolled up by ``rollup_run``, and the straight Python roll-up of
``tests.analytics.test_rollup``. GrowthBook's engine (``gbstats``: ``get_metric_dfs``,
``reduce_dimensionality``, ``analyze_metric_df``) is given per-level sums computed unit by unit in
Python and must agree with each level's numbers.
"""

import dataclasses
import datetime as dt
import random
import sys
import uuid
from collections import defaultdict
from collections.abc import Sequence

import pytest

from analytics.ingestion import services as ingestion
from analytics.rollup import Measure, MetricSpec, RollupQuery, RollupSpec, rollup_run
from analytics.rollup.dimensions import levels_statement, rollup_breakdown
from analytics.rollup.spec import ENTRY_DAY, MAX_LEVELS, MISSING_LEVEL, OTHER_LEVEL, Dimension
from tests.analytics.stats.test_quantile import GBSTATS
from tests.analytics.test_rollup import (
    DAY,
    HOUR,
    MS,
    Event,
    Exposure,
    _analysed,
    _post,
    _pre,
    assert_stats_equal,
    reference_rollup,
    write,
)

pytestmark = pytest.mark.django_db

START = dt.datetime(2024, 5, 1, 6, 0, tzinfo=dt.UTC)
VARIANTS = ("control", "treatment", "b")

METRICS = (
    MetricSpec("purchases", "binomial", Measure("purchase", "binomial", window_hours=72)),
    MetricSpec(
        "revenue_cuped",
        "sum",
        Measure("purchase", "sum", window_hours=48, cap=60.0),
        cuped=True,
        cuped_lookback_days=3,
        timeseries=True,
    ),
    MetricSpec("views", "count", Measure("view", "count", window_hours=24)),
    MetricSpec(
        "revenue_per_view", "ratio", Measure("purchase", "sum", 72), denominator=Measure("view", "count", 72)
    ),
    MetricSpec(
        "ratio_cuped",
        "ratio",
        Measure("purchase", "sum", 72),
        denominator=Measure("view", "count", 72),
        cuped=True,
        cuped_lookback_days=7,
    ),
    MetricSpec(
        "revenue_p90",
        "quantile",
        Measure("purchase", "sum", window_hours=72),
        quantile=0.9,
        quantile_scope="unit",
    ),
    MetricSpec(
        "purchase_p50_event",
        "quantile",
        Measure("purchase", "sum", window_hours=72),
        quantile=0.5,
        quantile_scope="event",
    ),
)


@dataclasses.dataclass(frozen=True)
class AttributedExposure:
    exposure: Exposure
    attributes: dict


def write_attributed(rows: Sequence[AttributedExposure], *, experiment: str | None = None) -> None:
    """Exposures with their attributes, through the write path (under ``experiment`` when given)."""
    ingestion.exposures_write(
        rows=[
            {
                "experiment": experiment or r.exposure.experiment,
                "variant": r.exposure.variant,
                "unit_id": r.exposure.unit_id,
                "timestamp": r.exposure.timestamp,
                "environment": r.exposure.environment,
                "attributes": r.attributes,
            }
            for r in rows
        ]
    )


def generate(
    seed: int, *, units: int = 160, countries: Sequence[str] = ("de", "fr", "us", "br")
) -> tuple[RollupSpec, list[AttributedExposure], list[Event]]:
    """Exposures with a ``country`` attribute (changing on later exposures, absent on some first
    ones, from a test key earlier still) and events around each unit's first exposure."""
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(len(countries))]  # skewed sizes
    rows: list[AttributedExposure] = []
    events: list[Event] = []
    for i in range(units):
        unit = f"user-{i}"
        variant = "retired" if rng.random() < 0.03 else rng.choice(VARIANTS)
        t0 = START + rng.randrange(0, 5 * 86_400_000) * MS
        first = {} if rng.random() < 0.08 else {"country": rng.choices(countries, weights)[0], "plan": "pro"}
        rows.append(AttributedExposure(Exposure(unit, variant, t0), first))
        for _ in range(rng.randrange(0, 3)):  # later exposures say another country: ignored
            later = t0 + rng.randrange(1, 2 * 86_400_000) * MS
            rows.append(
                AttributedExposure(Exposure(unit, variant, later), {"country": rng.choice(countries)})
            )
        if rng.random() < 0.04:  # in two variants: excluded
            rows.append(AttributedExposure(Exposure(unit, rng.choice(VARIANTS), t0 + HOUR), first))
        if rng.random() < 0.1:  # seen earlier from a test key, elsewhere: not the first analysed exposure
            rows.append(
                AttributedExposure(
                    Exposure(unit, variant, t0 - HOUR, environment="development"), {"country": "zz"}
                )
            )
        for _ in range(rng.randrange(0, 10)):
            offset = rng.randrange(-8 * 86_400_000, 5 * 86_400_000)
            name = rng.choice(["purchase", "purchase", "view", "view", "unrelated"])
            events.append(Event(unit, name, t0 + offset * MS, round(rng.uniform(0.0, 90.0), 2), uuid.uuid4()))
    spec = RollupSpec(
        experiment="exp",
        variants=VARIANTS,
        until=START + 7 * DAY,
        metrics=METRICS,
        environments=("production",),
    )
    return spec, rows, events


def reference_levels(spec: RollupSpec, rows: Sequence[AttributedExposure], dimension: str) -> dict[str, str]:
    """unit → level, from the rows: the attribute on the unit's first analysed exposure (entry day)."""
    first: dict[str, AttributedExposure] = {}
    for row in rows:
        e = row.exposure
        if e.experiment != spec.experiment or not _analysed(spec, e.environment):
            continue
        if e.unit_id not in first or e.timestamp < first[e.unit_id].exposure.timestamp:
            first[e.unit_id] = row
    if dimension == ENTRY_DAY:
        return {u: min(r.exposure.timestamp, spec.until).date().isoformat() for u, r in first.items()}
    return {u: r.attributes.get(dimension, MISSING_LEVEL) for u, r in first.items()}


def subset_rollup(spec: RollupSpec, rows: Sequence[AttributedExposure], units: set[str], name: str):
    """The roll-up of ``units`` alone: their exposures written as experiment ``name``."""
    write_attributed([r for r in rows if r.exposure.unit_id in units], experiment=name)
    return rollup_run(dataclasses.replace(spec, experiment=name))


def without_timeseries(spec: RollupSpec) -> RollupSpec:
    return dataclasses.replace(
        spec, metrics=tuple(dataclasses.replace(m, timeseries=False) for m in spec.metrics)
    )


# --- tests ------------------------------------------------------------------------------------------------
def test_rollup_breakdown__each_level__equals_the_roll_up_of_its_units_alone(clickhouse):
    # Given exposures whose country changes after the first exposure, and units without one
    spec, rows, events = generate(seed=3)
    write_attributed(rows)
    write(events=events)

    breakdown = rollup_breakdown(spec, "country")

    levels = reference_levels(spec, rows, "country")
    analysed = dict(_analysed_units(spec, rows))
    units = {level: sum(1 for u in analysed if levels[u] == level) for level in set(levels.values())}
    ranked = sorted((level for level in units if units[level]), key=lambda level: (-units[level], level))
    assert MISSING_LEVEL in ranked and "zz" not in ranked  # the test key's earlier exposure is not the first
    assert [level for level, _ in breakdown.levels] == ranked
    for index, (level, rollup) in enumerate(breakdown.levels):
        members = {u for u, v in levels.items() if v == level}
        alone = subset_rollup(spec, rows, members, f"alone_{index}")
        assert rollup.units == alone.units, level
        assert sum(rollup.units.values()) > 0
        for metric in spec.metrics:
            assert_stats_equal(rollup.totals[metric.key], alone.totals[metric.key])
        # and the Python reference, unit by unit (non-quantile metrics)
        subset = [r.exposure for r in rows if r.exposure.unit_id in members]
        additive = dataclasses.replace(spec, metrics=tuple(m for m in spec.metrics if m.type != "quantile"))
        expected = reference_rollup(additive, subset, events)
        for metric in additive.metrics:
            assert_stats_equal(rollup.totals[metric.key], expected[metric.key])


def test_rollup_breakdown__more_than_20_levels__20_largest_then_other_pooling_the_rest(clickhouse):
    # Given 26 countries of decreasing size (so the 20 largest are unambiguous but close)
    countries = [f"c{i:02d}" for i in range(26)]
    spec, rows, events = generate(seed=5, units=700, countries=countries)
    write_attributed(rows)
    write(events=events)

    breakdown = rollup_breakdown(spec, "country")

    levels = reference_levels(spec, rows, "country")
    units = dict.fromkeys(set(levels.values()), 0)
    analysed = {u for u, _ in _analysed_units(spec, rows)}
    for unit, level in levels.items():
        units[level] += unit in analysed
    ranked = sorted((level for level in units if units[level]), key=lambda level: (-units[level], level))
    assert len(ranked) > MAX_LEVELS
    names = [level for level, _ in breakdown.levels]
    assert names == [*ranked[:MAX_LEVELS], OTHER_LEVEL]
    for level, rollup in breakdown.levels:
        expected = sum(units[v] for v in ranked[MAX_LEVELS:]) if level == OTHER_LEVEL else units[level]
        assert sum(rollup.units.values()) == expected
    # and __other__ is the roll-up of the pooled levels' units alone
    pooled = {u for u, level in levels.items() if level in ranked[MAX_LEVELS:]}
    alone = subset_rollup(spec, rows, pooled, "alone_other")
    other = dict(breakdown.levels)[OTHER_LEVEL]
    assert other.units == alone.units
    for metric in spec.metrics:
        assert_stats_equal(other.totals[metric.key], alone.totals[metric.key])


def _analysed_units(spec: RollupSpec, rows: Sequence[AttributedExposure]) -> list[tuple[str, str]]:
    """(unit, variant) of the analysed units: one variant, one the experiment has."""
    seen: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        e = row.exposure
        if e.experiment == spec.experiment and _analysed(spec, e.environment):
            seen[e.unit_id].add(e.variant)
    return [(u, next(iter(v))) for u, v in seen.items() if len(v) == 1 and next(iter(v)) in spec.variants]


def test_rollup_breakdown__entry_day__each_day_equals_its_units_alone(clickhouse):
    spec, rows, events = generate(seed=8, units=120)
    write_attributed(rows)
    write(events=events)

    breakdown = rollup_breakdown(spec, ENTRY_DAY)

    levels = reference_levels(spec, rows, ENTRY_DAY)
    assert {level for level, _ in breakdown.levels} == {levels[u] for u, _ in _analysed_units(spec, rows)}
    assert len(breakdown.levels) >= 4
    for index, (level, rollup) in enumerate(breakdown.levels):
        alone = subset_rollup(spec, rows, {u for u, v in levels.items() if v == level}, f"day_{index}")
        assert rollup.units == alone.units
        for metric in spec.metrics:
            assert_stats_equal(rollup.totals[metric.key], alone.totals[metric.key])


def test_rollup_breakdown__percentile_cap__experiment_wide_cap_in_every_level(clickhouse):
    # Given a winsorized metric (the 80th percentile: it bites in small levels too)
    capped = Measure("purchase", "sum", window_hours=72, cap_percentile=0.8)
    base, rows, events = generate(seed=9, units=200)
    spec = dataclasses.replace(base, metrics=(MetricSpec("revenue_p80", "sum", capped),))
    write_attributed(rows)
    write(events=events)

    whole = rollup_run(spec)
    breakdown = rollup_breakdown(spec, "country")

    # Then every level is capped at the experiment's cap, and its sums are the level's units alone
    # with that cap fixed (not the cap the level's own units would give)
    cap = whole.caps_used["revenue_p80"]
    assert cap is not None and cap > 0
    fixed_spec = dataclasses.replace(
        spec,
        metrics=(MetricSpec("revenue_p80", "sum", Measure("purchase", "sum", window_hours=72, cap=cap)),),
    )
    levels = reference_levels(spec, rows, "country")
    own_caps = []
    for index, (level, rollup) in enumerate(breakdown.levels):
        assert rollup.caps_used["revenue_p80"] == cap
        members = {u for u, v in levels.items() if v == level}
        assert_stats_equal(
            rollup.totals["revenue_p80"],
            subset_rollup(fixed_spec, rows, members, f"fx_{index}").totals["revenue_p80"],
        )
        own_caps.append(subset_rollup(spec, rows, members, f"own_{index}").caps_used["revenue_p80"])
    assert any(own != cap for own in own_caps)  # a level's own cap would differ: the test can fail
    # and the levels add up to the experiment (sums of a partition)
    for i, (variant, stats) in enumerate(whole.totals["revenue_p80"]):
        assert sum(r.totals["revenue_p80"][i][1].sum for _, r in breakdown.levels) == pytest.approx(
            stats.sum, rel=1e-12
        )
        assert sum(r.units[variant] for _, r in breakdown.levels) == whole.units[variant]


def test_rollup_breakdown__no_exposures__no_levels(clickhouse):
    spec, _, _ = generate(seed=1, units=1)
    assert rollup_breakdown(spec, "country").levels == []


def test_levels_statement__attribute_name__bound_never_in_the_sql():
    spec, _, _ = generate(seed=1, units=1)
    name = "country'); DROP TABLE exposures; --"
    statement = levels_statement(spec, Dimension(name))
    assert name not in statement.sql
    assert name in statement.params.values()
    query = RollupQuery(spec, dimension=Dimension(name, levels=("de", "fr")))
    for sql in (query.units_statement(), query.metrics_statement()):
        assert "'de'" not in sql.sql and name not in sql.sql
        assert ["de", "fr"] in sql.params.values()


# --- GrowthBook's engine, level by level -----------------------------------------------------------------------
def _gbstats():
    if not (GBSTATS / "gbstats").is_dir():
        pytest.skip(f"GrowthBook's engine (the oracle) is not at {GBSTATS}")
    pytest.importorskip("pydantic", reason="gbstats needs pydantic (pip install -e '.[dev]')")
    if str(GBSTATS) not in sys.path:
        sys.path.insert(0, str(GBSTATS))
    from gbstats.gbstats import process_analysis
    from gbstats.models.settings import AnalysisSettingsForStatsEngine, MetricSettingsForStatsEngine

    return process_analysis, AnalysisSettingsForStatsEngine, MetricSettingsForStatsEngine


# (our metric, GrowthBook's statistic type, main and denominator metric types)
GB_METRICS = {
    "purchases": ("mean", "binomial", None),
    "revenue_cuped": ("mean_ra", "count", None),
    "views": ("mean", "count", None),
    "revenue_per_view": ("ratio", "count", "count"),
}


def gbstats_rows(spec: RollupSpec, rows, events, levels: dict[str, str], key: str):
    """GrowthBook's input for ``key``: per (level, variant) sums, unit by unit in Python from the rows."""
    import pandas as pd

    metric = next(m for m in spec.metrics if m.key == key)
    by_unit: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.timestamp < spec.until and _analysed(spec, event.environment):
            by_unit[event.unit_id].append(event)
    first = {u: min(r.exposure.timestamp for r in rows if r.exposure.unit_id == u and r.exposure.experiment ==
                    spec.experiment and _analysed(spec, r.exposure.environment)) for u in levels}  # fmt: skip
    sums: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for unit, variant in _analysed_units(spec, rows):
        t0, cell = first[unit], sums[(levels[unit], variant)]
        y = _post(metric.measure, by_unit[unit], t0)
        cell["users"] += 1
        cell["count"] += 1
        cell["main_sum"] += y
        cell["main_sum_squares"] += y * y
        if metric.cuped:
            x = _pre(metric.measure, by_unit[unit], t0, metric.cuped_lookback_days)
            cell["covariate_sum"] += x
            cell["covariate_sum_squares"] += x * x
            cell["main_covariate_sum_product"] += x * y
        if metric.denominator is not None:
            d = _post(metric.denominator, by_unit[unit], t0)
            cell["denominator_sum"] += d
            cell["denominator_sum_squares"] += d * d
            cell["main_denominator_sum_product"] += y * d
    # in level-name order: GrowthBook's stable sort by units then breaks ties by name, as ours does
    return pd.DataFrame(
        [
            {"dimension": level, "variation": variant, **cell}
            for (level, variant), cell in sorted(sums.items())
        ]
    )


def test_rollup_breakdown__every_level__agrees_with_gbstats_dimension_analysis(clickhouse):
    process_analysis, analysis_settings, metric_settings = _gbstats()
    from analytics.results.analysis import MetricAnalysis, results_document
    from analytics.stats import AnalysisOptions

    # Given 26 countries: 20 levels, then GrowthBook's "(other)" (max_dimensions 21 keeps 20 and pools the rest)
    spec, rows, events = generate(seed=5, units=700, countries=[f"c{i:02d}" for i in range(26)])
    write_attributed(rows)
    write(events=events)
    levels = reference_levels(spec, rows, "country")

    breakdown = rollup_breakdown(spec, "country")

    settings = analysis_settings(
        var_names=list(VARIANTS), var_ids=list(VARIANTS), weights=[1 / 3] * 3, dimension="country",
        stats_engine="frequentist", max_dimensions=MAX_LEVELS + 1,
    )  # fmt: skip
    checked = 0
    for key, (statistic, main_type, denominator_type) in GB_METRICS.items():
        metric = metric_settings(id=key, name=key, statistic_type=statistic, main_metric_type=main_type,
                                 denominator_metric_type=denominator_type,
                                 covariate_metric_type=main_type if statistic == "mean_ra" else None)  # fmt: skip
        var_id_map = {v: i for i, v in enumerate(VARIANTS)}
        theirs = process_analysis(gbstats_rows(spec, rows, events, levels, key), var_id_map, metric, settings)
        theirs_by_level = {(OTHER_LEVEL if d.dimension == "(other)" else d.dimension): d for d in theirs}
        assert [level for level, _ in breakdown.levels] == list(theirs_by_level)  # the same levels, in order
        spec_metric = next(m for m in spec.metrics if m.key == key)
        plan = [MetricAnalysis(key=key, name=key, role="secondary", type=spec_metric.type,
                               options=AnalysisOptions(cuped=spec_metric.cuped,
                                                      binomial=spec_metric.type == "binomial"))]  # fmt: skip
        for level, rollup in breakdown.levels:
            ours = results_document(experiment="exp", rollup=rollup, metrics=plan, weights=[1, 1, 1],
                                    srm_threshold=0.001, correction="none", computed_at=spec.until)  # fmt: skip
            gb = theirs_by_level[level]
            assert ours.srm.p_value == pytest.approx(gb.srm, rel=1e-9, abs=1e-12)
            block = ours.metrics[0]
            for i, variant in enumerate(VARIANTS):
                assert block.variants[i].units == gb.variations[i].users
                if block.variants[i].mean is None:  # a ratio over a zero denominator: GrowthBook says 0
                    assert gb.variations[i].denominator == 0 and gb.variations[i].cr == 0
                else:
                    assert block.variants[i].mean == pytest.approx(gb.variations[i].cr, rel=1e-9, abs=1e-12)
                if i == 0:
                    continue
                comparison, theirs_v = block.comparison_of(variant), gb.variations[i]
                if theirs_v.errorMessage:
                    assert comparison.relative.estimate is None
                    continue
                assert comparison.relative.estimate == pytest.approx(theirs_v.expected, rel=1e-9, abs=1e-12)
                assert comparison.relative.ci[0] == pytest.approx(theirs_v.ci[0], rel=1e-9, abs=1e-12)
                assert comparison.relative.ci[1] == pytest.approx(theirs_v.ci[1], rel=1e-9, abs=1e-12)
                assert comparison.p_value == pytest.approx(theirs_v.pValue, rel=1e-9, abs=1e-12)
                checked += 1
    assert checked > 100
