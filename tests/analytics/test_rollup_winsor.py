"""Winsorizing: percentile caps (``cap_percentile``) in the cold and incremental roll-ups.

The reference is numpy over the same rows: every analysed unit's raw value (units without events as
0), the percentile over all variants pooled (``np.quantile``'s default ``linear`` method, which is
PostgreSQL's ``PERCENTILE_CONT`` in GrowthBook's percentile capping), zeros left out when asked, then
each unit's ``min(value, cap)``. The engine's answers on those sums are checked against GrowthBook's.
"""

import dataclasses
import datetime as dt
import math
import uuid

import numpy as np
import pytest

from analytics.rollup import Measure, MetricSpec, RollupQuery, RollupSpec, rollup_run
from analytics.stats import AnalysisOptions, SampleStats, compare
from tests.analytics.stats.test_quantile import GBSTATS
from tests.analytics.test_rollup import (
    DAY,
    HOUR,
    T0,
    Event,
    Exposure,
    _post,
    _units,
    assert_stats_equal,
    generate,
    reference_rollup,
    write,
)

pytestmark = pytest.mark.django_db

WINSORIZED = (
    MetricSpec("revenue_p90", "sum", Measure("purchase", "sum", window_hours=72, cap_percentile=0.9)),
    MetricSpec(
        "views_p75_nonzero",
        "count",
        Measure("view", "count", cap_percentile=0.75, cap_ignore_zeros=True),
        timeseries=True,
    ),
    MetricSpec(
        "revenue_p95_cuped",
        "sum",
        Measure("purchase", "sum", window_hours=48, cap_percentile=0.95, cap_ignore_zeros=True),
        cuped=True,
        cuped_lookback_days=7,
        timeseries=True,
    ),
    MetricSpec(  # a ratio whose denominator metric is winsorized
        "revenue_per_view",
        "ratio",
        Measure("purchase", "sum", window_hours=72),
        denominator=Measure("view", "count", cap_percentile=0.75, cap_ignore_zeros=True),
    ),
    MetricSpec("views_fixed_cap", "count", Measure("view", "count", cap=3.0)),
)


def winsor_spec(seed: int, units: int) -> tuple[RollupSpec, list, list, list]:
    spec, exposures, events, replays = generate(seed=seed, units=units)
    return dataclasses.replace(spec, metrics=WINSORIZED), exposures, events, replays


def reference_caps(spec: RollupSpec, exposures, events, *, repeat: int = 1) -> dict[Measure, float]:
    """numpy's percentile of every analysed unit's raw value, variants pooled (each unit ``repeat``
    times: what shards holding the same units send)."""
    units, _ = _units(spec, exposures)
    unique = {e.event_id: e for e in events}.values()  # replays count once
    by_unit: dict[str, list[Event]] = {}
    for event in unique:
        if event.timestamp < spec.until and (
            spec.environments is None or event.environment in spec.environments
        ):
            by_unit.setdefault(event.unit_id, []).append(event)
    caps = {}
    for measure in spec.percentile_capped:
        raw = dataclasses.replace(measure, cap_percentile=None, cap_ignore_zeros=False)
        values = np.repeat([_post(raw, by_unit.get(u, []), t0) for u, (t0, _) in units.items()], repeat)
        if measure.cap_ignore_zeros:
            values = values[values != 0]
        caps[measure] = float(np.quantile(values, measure.cap_percentile))
    return caps


def fixed(spec: RollupSpec, caps: dict[Measure, float]) -> RollupSpec:
    """The spec with every percentile cap replaced by the reference's fixed cap."""

    def resolve(measure: Measure | None) -> Measure | None:
        if measure is None or measure.cap_percentile is None:
            return measure
        return dataclasses.replace(measure, cap=caps[measure], cap_percentile=None, cap_ignore_zeros=False)

    metrics = tuple(
        dataclasses.replace(m, measure=resolve(m.measure), denominator=resolve(m.denominator))
        for m in spec.metrics
    )
    return dataclasses.replace(spec, metrics=metrics)


def test_rollup__percentile_caps__capped_sums_equal_numpy_reference(clickhouse):
    # Given generated traffic (replays, test keys, windows' edges, negative values)
    spec, exposures, events, replays = winsor_spec(seed=7, units=160)
    write(exposures, events + replays)

    rollup = rollup_run(spec)

    # Then each cap is numpy's percentile over the pooled units, and caps bite
    caps = reference_caps(spec, exposures, events)
    assert rollup.caps_used["revenue_p90"] == pytest.approx(caps[WINSORIZED[0].measure], rel=1e-12)
    assert rollup.caps_used["views_p75_nonzero"] == pytest.approx(caps[WINSORIZED[1].measure], rel=1e-12)
    assert rollup.caps_used["revenue_p95_cuped"] == pytest.approx(caps[WINSORIZED[2].measure], rel=1e-12)
    assert rollup.caps_used["revenue_per_view"] is None  # its numerator has no cap
    assert rollup.caps_used["views_fixed_cap"] == 3.0
    # ignoring zeros raises the cap (most units have no purchase in the window): a different number
    with_zeros = dataclasses.replace(WINSORIZED[2].measure, cap_ignore_zeros=False)
    assert reference_caps(dataclasses.replace(spec, metrics=(MetricSpec("v", "sum", with_zeros),)), exposures,
                          events)[with_zeros] < caps[WINSORIZED[2].measure]  # fmt: skip
    # and the statistics are those of min(value, cap) per unit, exactly
    expected = reference_rollup(fixed(spec, caps), exposures, events)
    for metric in spec.metrics:
        for (variant, got), (_, want) in zip(rollup.totals[metric.key], expected[metric.key], strict=True):
            for name, value in dataclasses.asdict(want).items():
                assert getattr(got, name) == pytest.approx(value, rel=1e-12, abs=1e-12), (
                    metric.key,
                    variant,
                    name,
                )
    uncapped = reference_rollup(
        dataclasses.replace(spec, metrics=(MetricSpec("raw", "sum", Measure("purchase", "sum", 72)),)),
        exposures,
        events,
    )["raw"]
    assert [s.sum for _, s in uncapped] != [s.sum for _, s in rollup.totals["revenue_p90"]]


def test_rollup__percentile_caps_time_series__every_day_uses_the_final_cap(clickhouse):
    spec, exposures, events, replays = winsor_spec(seed=11, units=80)
    write(exposures, events + replays)

    rollup = rollup_run(spec)

    reference_spec = fixed(spec, reference_caps(spec, exposures, events))
    for key in ("views_p75_nonzero", "revenue_p95_cuped"):
        days = rollup.daily[key]
        for day in days:
            assert_stats_equal(
                day.variants, reference_rollup(reference_spec, exposures, events, day=day.date)[key]
            )
        assert_stats_equal(days[-1].variants, rollup.totals[key])


def test_rollup__percentile_cap_of_units_without_events__cap_is_zero(clickhouse):
    # Given 10 units of which 2 have a purchase: the pooled p75 is 0 (zeros count) ...
    write(
        exposures=[Exposure(f"u{i}", ("control", "treatment")[i % 2], T0) for i in range(10)],
        events=[
            Event("u0", "buy", T0 + HOUR, 40.0, uuid.uuid4()),
            Event("u1", "buy", T0 + HOUR, 10.0, uuid.uuid4()),
        ],
    )
    spec = RollupSpec(
        experiment="exp",
        variants=("control", "treatment"),
        until=T0 + 2 * DAY,
        metrics=(
            MetricSpec("with_zeros", "sum", Measure("buy", "sum", cap_percentile=0.75)),
            MetricSpec("nonzero", "sum", Measure("buy", "sum", cap_percentile=0.75, cap_ignore_zeros=True)),
        ),
    )

    rollup = rollup_run(spec)

    assert rollup.caps_used["with_zeros"] == 0.0
    assert {v: s.sum for v, s in rollup.totals["with_zeros"]} == {"control": 0.0, "treatment": 0.0}
    # ... and without the zeros it is numpy's p75 of [10, 40]: 32.5, which caps u0's 40
    assert rollup.caps_used["nonzero"] == np.quantile([10.0, 40.0], 0.75) == 32.5
    assert {v: s.sum for v, s in rollup.totals["nonzero"]} == {"control": 32.5, "treatment": 10.0}


def test_rollup_query__percentile_cap_before_it_is_computed__refused():
    spec = RollupSpec(
        experiment="exp",
        variants=("control", "treatment"),
        until=T0,
        metrics=(MetricSpec("m", "sum", Measure("buy", "sum", cap_percentile=0.9)),),
    )
    with pytest.raises(ValueError, match="computed first"):
        RollupQuery(spec).metrics_statement()
    statement = RollupQuery(spec).caps_statement(10)
    assert statement.params["p_cap_level_0"] == 0.9 and "0.9" not in statement.sql


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "sum", "cap_percentile": 1.0},
        {"kind": "sum", "cap_percentile": 0.0},
        {"kind": "sum", "cap_percentile": 0.9, "cap": 5.0},
        {"kind": "binomial", "cap_percentile": 0.9},
        {"kind": "sum", "cap_ignore_zeros": True},
    ],
)
def test_measure__invalid_percentile_cap__value_error(kwargs):
    with pytest.raises(ValueError):
        Measure("buy", **kwargs)


# --- GrowthBook's engine on the winsorized sums ------------------------------------------------------------
def _gbstats():
    import sys

    if not (GBSTATS / "gbstats").is_dir():
        pytest.skip(f"GrowthBook's engine (the oracle) is not at {GBSTATS}")
    pytest.importorskip("pydantic", reason="gbstats needs pydantic (pip install -e '.[dev]')")
    if str(GBSTATS) not in sys.path:
        sys.path.insert(0, str(GBSTATS))
    from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
    from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
    from gbstats.models.statistics import SampleMeanStatistic

    return SampleMeanStatistic, TwoSidedTTest, FrequentistConfig, EffectBayesianABTest, EffectBayesianConfig


def _close(ours: float, theirs: float) -> None:
    assert math.isfinite(theirs)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("key", ["revenue_p90", "views_p75_nonzero"])
def test_winsorized_metric__engine_on_capped_sums__agrees_with_gbstats(clickhouse, key):
    statistic, ttest, frequentist, bayesian, bayesian_config = _gbstats()
    spec, exposures, events, _ = winsor_spec(seed=5, units=300)
    write(exposures, events)
    totals = dict(rollup_run(spec).totals[key])
    control, treatment = totals["control"], totals["treatment"]
    assert isinstance(control, SampleStats) and control.n > 50
    pair = [tuple(statistic(n=s.n, sum=s.sum, sum_squares=s.sum_squares) for s in (control, treatment))]

    ours = compare(("control", control), ("treatment", treatment), AnalysisOptions())
    relative = ttest(pair, frequentist(difference_type="relative")).compute_result()
    absolute = ttest(pair, frequentist(difference_type="absolute")).compute_result()
    assert relative.errorMessage is None and ours["error"] is None
    _close(ours["relative"]["estimate"], relative.expected)
    _close(ours["relative"]["ci"][0], relative.ci[0])
    _close(ours["relative"]["ci"][1], relative.ci[1])
    _close(ours["p_value"], relative.pValue)
    _close(ours["absolute"]["estimate"], absolute.expected)
    _close(ours["absolute"]["ci"][1], absolute.ci[1])

    ours_bayes = compare(("control", control), ("treatment", treatment), AnalysisOptions(engine="bayesian"))
    theirs = bayesian(pair, bayesian_config()).compute_result()
    _close(ours_bayes["chance_to_win"], theirs.chanceToWin)
    _close(ours_bayes["relative"]["estimate"], theirs.expected)


# --- the incremental refresh --------------------------------------------------------------------------------
@pytest.mark.slow
def test_rollup_refresh__percentile_caps__equal_to_cold_and_reaggregated_every_time(clickhouse):
    from tests.analytics.test_rollup_incremental import DAY as IDAY
    from tests.analytics.test_rollup_incremental import HOUR as IHOUR
    from tests.analytics.test_rollup_incremental import START, Scenario, refresh, spec_at

    # Given a winsorized metric beside plain ones, and traffic arriving in batches
    metrics = (*WINSORIZED, MetricSpec("errors", "count", Measure("error", "count")))
    scenario = Scenario(3)
    now = START + 3 * IDAY
    scenario.send(*scenario.new_units(50, since=START, now=now), received_at=now - dt.timedelta(seconds=30))
    first = refresh(spec_at(now, metrics), None, now)  # refresh() asserts equality with the cold roll-up
    state = first.state
    for step in range(1, 4):
        scenario.send(*scenario.late_traffic(now), received_at=now - dt.timedelta(seconds=10))
        previous, now = now, now + 6 * IHOUR
        scenario.send(
            *scenario.new_units(6, since=previous, now=now), received_at=now - dt.timedelta(seconds=40)
        )
        spec = spec_at(now, metrics)

        rollup = refresh(spec, state, now)

        # Then it equals the cold roll-up (refresh), caps included, recomputing sums from the whole state
        assert rollup.kind == "incremental", step
        assert rollup.state.updates == 0
        # (to rounding: a unit's raw sum may be added up in another order from the state)
        cold_caps = rollup_run(spec).caps_used
        assert rollup.caps_used.keys() == cold_caps.keys()
        for key, cap in cold_caps.items():
            assert rollup.caps_used[key] == (None if cap is None else pytest.approx(cap, rel=1e-12)), key
        state = rollup.state
    caps = reference_caps(spec, scenario.exposures, scenario.events)
    assert rollup.caps_used["revenue_p90"] == pytest.approx(caps[WINSORIZED[0].measure], rel=1e-12)


def test_rollup__percentile_cap_ignoring_zeros_without_any_event__no_cap(clickhouse):
    write(exposures=[Exposure(f"u{i}", ("control", "treatment")[i % 2], T0) for i in range(6)])
    spec = RollupSpec(
        experiment="exp",
        variants=("control", "treatment"),
        until=T0 + DAY,
        metrics=(
            MetricSpec("nonzero", "sum", Measure("buy", "sum", cap_percentile=0.5, cap_ignore_zeros=True)),
        ),
    )

    rollup = rollup_run(spec)

    assert rollup.caps_used == {"nonzero": None}
    assert [(v, s.n, s.sum) for v, s in rollup.totals["nonzero"]] == [
        ("control", 3, 0.0),
        ("treatment", 3, 0.0),
    ]
