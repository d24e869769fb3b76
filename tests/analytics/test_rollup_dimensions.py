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
import uuid
from collections.abc import Sequence

import pytest

from analytics.ingestion import services as ingestion
from analytics.rollup import Measure, MetricSpec, RollupSpec, rollup_run
from analytics.rollup.dimensions import rollup_breakdown
from analytics.rollup.spec import ENTRY_DAY, MISSING_LEVEL
from tests.analytics.test_rollup import (
    DAY,
    HOUR,
    MS,
    Event,
    Exposure,
    _analysed,
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
    assert [level for level, _ in breakdown.levels] == ["de", "fr", "us", "br", MISSING_LEVEL] or {
        level for level, _ in breakdown.levels
    } == set(levels.values())
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
