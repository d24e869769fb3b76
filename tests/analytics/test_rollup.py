"""The roll-up's semantics (CONTRACT, "Analysis semantics"), on both ClickHouse backends.

Every expectation comes from the hand-built data itself or from ``reference_rollup`` below: a
straightforward Python computation over the same rows (one loop per unit, no SQL), never from the
roll-up's own output.
"""

import datetime as dt
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields

import pytest

from analytics.ingestion import services as ingestion
from analytics.rollup import Measure, MetricSpec, RollupQuery, RollupSpec, rollup_run
from analytics.rollup.query import stats_class
from analytics.stats import CupedStats, RatioCupedStats, RatioStats, SampleStats

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2024, 5, 10, 12, 0, 0, tzinfo=dt.UTC)
UNTIL = dt.datetime(2024, 5, 20, 0, 0, 0, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


# --- the independent reference ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exposure:
    unit_id: str
    variant: str
    timestamp: dt.datetime
    experiment: str = "exp"
    environment: str = "production"  # the environment of the SDK key that sent it


@dataclass(frozen=True)
class Event:
    unit_id: str
    name: str
    timestamp: dt.datetime
    value: float = 1.0
    event_id: uuid.UUID | None = None
    environment: str = "production"


def write(exposures: Sequence[Exposure] = (), events: Sequence[Event] = ()) -> None:
    """Store rows through the write path (``analytics.ingestion``)."""
    if exposures:
        ingestion.exposures_write(
            rows=[
                {
                    "experiment": e.experiment,
                    "variant": e.variant,
                    "unit_id": e.unit_id,
                    "timestamp": e.timestamp,
                    "environment": e.environment,
                }
                for e in exposures
            ]  # fmt: skip
        )
    if events:
        ingestion.events_write(
            rows=[
                {
                    "event_id": e.event_id or uuid.uuid4(),
                    "name": e.name,
                    "unit_id": e.unit_id,
                    "value": e.value,
                    "timestamp": e.timestamp,
                    "environment": e.environment,
                }
                for e in events
            ]  # fmt: skip
        )


def _units(spec: RollupSpec, exposures: Sequence[Exposure]) -> tuple[dict[str, tuple[dt.datetime, str]], int]:
    """unit → (first exposure, variant) for units seen in exactly one of the experiment's variants."""
    first: dict[str, dt.datetime] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    for exposure in exposures:
        if exposure.experiment != spec.experiment or not _analysed(spec, exposure.environment):
            continue
        seen[exposure.unit_id].add(exposure.variant)
        first[exposure.unit_id] = min(first.get(exposure.unit_id, exposure.timestamp), exposure.timestamp)
    units = {
        u: (first[u], next(iter(v)))
        for u, v in seen.items()
        if len(v) == 1 and next(iter(v)) in spec.variants
    }
    multiple = sum(1 for v in seen.values() if len(v) > 1)
    return units, multiple


def _analysed(spec: RollupSpec, environment: str) -> bool:
    return spec.environments is None or environment in spec.environments


def _value(measure: Measure, events: Sequence[Event], lo: dt.datetime, hi: dt.datetime | None) -> float:
    matching = [
        e
        for e in events
        if e.name == measure.event and lo <= e.timestamp and (hi is None or e.timestamp < hi)
    ]
    if measure.kind == "binomial":
        return 1.0 if matching else 0.0
    raw = float(len(matching)) if measure.kind == "count" else sum(e.value for e in matching)
    return raw if measure.cap is None else min(raw, measure.cap)


def _post(measure: Measure, events: Sequence[Event], t0: dt.datetime) -> float:
    return _value(
        measure, events, t0, None if measure.window_hours is None else t0 + measure.window_hours * HOUR
    )


def _pre(measure: Measure, events: Sequence[Event], t0: dt.datetime, lookback_days: int) -> float:
    return _value(measure, events, t0 - lookback_days * DAY, t0)


def reference_rollup(
    spec: RollupSpec, exposures: Sequence[Exposure], events: Sequence[Event], *, day: dt.date | None = None
) -> dict[str, list[tuple[str, object]]]:
    """Every metric's per-variant statistics, computed unit by unit in Python.

    ``day``: only units exposed by the end of that day (UTC), with their events up to then.
    """
    units, _ = _units(spec, exposures)
    unique: dict[uuid.UUID, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)  # a replay counts once
    by_unit: dict[str, list[Event]] = defaultdict(list)
    for event in unique.values():
        if not _analysed(spec, event.environment):
            continue
        if event.timestamp < spec.until and (day is None or event.timestamp.date() <= day):
            by_unit[event.unit_id].append(event)
    if day is not None:
        units = {u: tv for u, tv in units.items() if min(tv[0], spec.until).date() <= day}
    result = {}
    for metric in spec.metrics:
        per_variant = []
        for variant in spec.variants:
            members = [(u, t0) for u, (t0, v) in units.items() if v == variant]
            y = [_post(metric.measure, by_unit[u], t0) for u, t0 in members]
            x = [_pre(metric.measure, by_unit[u], t0, metric.cuped_lookback_days) for u, t0 in members]
            if metric.denominator is None:
                stats = CupedStats.from_values(y, x) if metric.cuped else SampleStats.from_values(y)
            else:
                d = [_post(metric.denominator, by_unit[u], t0) for u, t0 in members]
                dx = [
                    _pre(metric.denominator, by_unit[u], t0, metric.cuped_lookback_days) for u, t0 in members
                ]
                stats = (
                    RatioCupedStats.from_values(y, d, x, dx) if metric.cuped else RatioStats.from_values(y, d)
                )
            per_variant.append((variant, stats))
        result[metric.key] = per_variant
    return result


def assert_stats_equal(actual: list, expected: list) -> None:
    assert [v for v, _ in actual] == [v for v, _ in expected]
    for (variant, got), (_, want) in zip(actual, expected, strict=True):
        assert type(got) is type(want), variant
        for f in fields(want):
            assert getattr(got, f.name) == pytest.approx(getattr(want, f.name), rel=1e-9, abs=1e-9), (
                variant,
                f.name,
            )


def spec_of(*metrics: MetricSpec, variants=("control", "treatment"), until=UNTIL) -> RollupSpec:
    return RollupSpec(experiment="exp", variants=tuple(variants), until=until, metrics=metrics)


def by_variant(rollup, key: str) -> dict:
    return dict(rollup.totals[key])


# --- hand-built cases ---------------------------------------------------------------------------------------
def test_rollup__several_exposures__first_exposure_is_t0_with_its_variant(clickhouse):
    # Given a unit whose later exposure arrives first, and an exposure of another experiment
    write(
        exposures=[
            Exposure("u1", "treatment", T0 + 2 * HOUR),
            Exposure("u1", "treatment", T0),
            Exposure("u1", "control", T0 - DAY, experiment="other"),
        ],
        events=[Event("u1", "buy", T0 + 30 * dt.timedelta(minutes=1))],
    )
    spec = spec_of(MetricSpec("buyers", "binomial", Measure("buy", "binomial", window_hours=1)))

    rollup = rollup_run(spec)

    assert rollup.units == {"control": 0, "treatment": 1}
    assert rollup.first_exposure_at == T0  # the 30-minute event is inside the 1-hour window from T0
    assert by_variant(rollup, "buyers")["treatment"] == SampleStats(n=1, sum=1.0, sum_squares=1.0)


def test_rollup__unit_in_two_variants__excluded_and_counted(clickhouse):
    write(
        exposures=[
            Exposure("both", "control", T0),
            Exposure("both", "treatment", T0 + HOUR),
            Exposure("c", "control", T0),
            Exposure("ghost", "variant_we_dropped", T0),
        ],
        events=[Event("both", "buy", T0 + HOUR), Event("c", "buy", T0 + HOUR)],
    )
    spec = spec_of(MetricSpec("orders", "count", Measure("buy", "count")))

    rollup = rollup_run(spec)

    assert rollup.units == {"control": 1, "treatment": 0}
    assert rollup.multiple_exposures == 1
    assert rollup.unknown_variant_units == 1
    assert by_variant(rollup, "orders")["control"] == SampleStats(n=1, sum=1.0, sum_squares=1.0)


def test_rollup__window_edges__t0_included_and_t0_plus_window_excluded(clickhouse):
    write(
        exposures=[Exposure("u", "control", T0)],
        events=[
            Event("u", "buy", T0),  # exactly t0: in
            Event("u", "buy", T0 + 2 * HOUR - MS),  # last millisecond of the window: in
            Event("u", "buy", T0 + 2 * HOUR),  # exactly t0 + window: out
            Event("u", "buy", T0 - MS),  # before t0: out
        ],
    )
    spec = spec_of(MetricSpec("orders", "count", Measure("buy", "count", window_hours=2)))

    assert by_variant(rollup_run(spec), "orders")["control"] == SampleStats(n=1, sum=2.0, sum_squares=4.0)


def test_rollup__events_before_t0__only_the_cuped_covariate_within_lookback(clickhouse):
    write(
        exposures=[Exposure("u", "control", T0)],
        events=[
            Event("u", "buy", T0 - 2 * DAY, value=5.0),  # exactly t0 - lookback: covariate
            Event("u", "buy", T0 - MS, value=7.0),  # just before t0: covariate
            Event("u", "buy", T0 - 2 * DAY - MS, value=100.0),  # before the look-back: nowhere
            Event("u", "buy", T0, value=3.0),  # the metric
        ],
    )
    spec = spec_of(MetricSpec("revenue", "sum", Measure("buy", "sum"), cuped=True, cuped_lookback_days=2))

    stats = by_variant(rollup_run(spec), "revenue")["control"]

    assert stats == CupedStats(
        n=1, sum=3.0, sum_squares=9.0, pre_sum=12.0, pre_sum_squares=144.0, sum_products=36.0
    )


def test_rollup__cap__caps_each_units_value_and_its_covariate(clickhouse):
    write(
        exposures=[Exposure("whale", "control", T0), Exposure("minnow", "control", T0)],
        events=[
            Event("whale", "buy", T0 + HOUR, value=80.0),
            Event("whale", "buy", T0 + 2 * HOUR, value=70.0),  # 150 in all, capped at 100
            Event("whale", "buy", T0 - HOUR, value=300.0),  # covariate 300, capped at 100
            Event("minnow", "buy", T0 + HOUR, value=30.0),
        ],
    )
    spec = spec_of(MetricSpec("revenue", "sum", Measure("buy", "sum", cap=100.0), cuped=True))

    stats = by_variant(rollup_run(spec), "revenue")["control"]

    assert stats == CupedStats(
        n=2, sum=130.0, sum_squares=100.0**2 + 30.0**2, pre_sum=100.0, pre_sum_squares=100.0**2,
        sum_products=100.0 * 100.0,
    )  # fmt: skip


def test_rollup__units_without_events__count_as_zero(clickhouse):
    write(
        exposures=[Exposure(f"u{i}", "treatment", T0) for i in range(4)],
        events=[
            Event("u0", "buy", T0 + HOUR, value=10.0),
            Event("someone_else", "buy", T0 + HOUR, value=99.0),
        ],
    )
    spec = spec_of(MetricSpec("revenue", "sum", Measure("buy", "sum")))

    stats = by_variant(rollup_run(spec), "revenue")

    assert stats["treatment"] == SampleStats(n=4, sum=10.0, sum_squares=100.0)
    assert stats["control"] == SampleStats(n=0, sum=0.0, sum_squares=0.0)


def test_rollup__ratio__numerator_sum_over_denominator_metric_value(clickhouse):
    # Given revenue per order: numerator = buy values within 24 h (capped at 50),
    # denominator = the "orders" metric: count of buy events, no window
    write(
        exposures=[Exposure("a", "control", T0), Exposure("b", "control", T0)],
        events=[
            Event("a", "buy", T0 + HOUR, value=20.0),
            Event("a", "buy", T0 + 2 * HOUR, value=40.0),  # numerator 60 → capped 50
            Event("a", "buy", T0 + 30 * HOUR, value=5.0),  # outside the numerator's window; an order
            Event("b", "buy", T0 + HOUR, value=10.0),
        ],
    )
    metric = MetricSpec(
        "aov", "ratio", Measure("buy", "sum", window_hours=24, cap=50.0), denominator=Measure("buy", "count")
    )

    stats = by_variant(rollup_run(spec_of(metric)), "aov")["control"]

    # a: m = 50, d = 3; b: m = 10, d = 1
    assert stats == RatioStats(
        n=2, m_sum=60.0, m_sum_squares=2600.0, d_sum=4.0, d_sum_squares=10.0, md_sum_products=160.0
    )


def test_rollup__events_at_or_after_until__ignored(clickhouse):
    stopped_at = T0 + 3 * HOUR
    write(
        exposures=[Exposure("u", "control", T0)],
        events=[
            Event("u", "buy", stopped_at - MS),
            Event("u", "buy", stopped_at),
            Event("u", "buy", stopped_at + DAY),
        ],
    )
    spec = spec_of(MetricSpec("orders", "count", Measure("buy", "count")), until=stopped_at)

    assert by_variant(rollup_run(spec), "orders")["control"] == SampleStats(n=1, sum=1.0, sum_squares=1.0)


def test_rollup__replayed_event__counted_once(clickhouse):
    replayed = Event("u", "buy", T0 + HOUR, value=25.0, event_id=uuid.uuid4())
    write(exposures=[Exposure("u", "control", T0)], events=[replayed])
    write(events=[replayed])  # a client retry: the same event_id again, in a separate insert
    write(events=[replayed, Event("u", "buy", T0 + 2 * HOUR, value=5.0)])

    stats = by_variant(rollup_run(spec_of(MetricSpec("revenue", "sum", Measure("buy", "sum")))), "revenue")

    assert clickhouse.count("events") == 4
    assert stats["control"] == SampleStats(n=1, sum=30.0, sum_squares=900.0)


def test_rollup__timeseries__cumulative_by_day_of_exposure_and_of_event(clickhouse):
    day1 = dt.datetime(2024, 5, 10, 20, 0, tzinfo=dt.UTC)
    write(
        exposures=[Exposure("early", "control", day1), Exposure("late", "control", day1 + DAY)],
        events=[
            Event("early", "buy", day1 + HOUR, value=4.0),  # day 1 (21:00)
            Event("early", "buy", day1 + 5 * HOUR, value=4.0),  # day 2 (01:00): early's total 8 → capped 6
            Event("late", "buy", day1 + DAY + HOUR, value=1.0),  # day 2
        ],
    )
    spec = spec_of(
        MetricSpec("revenue", "sum", Measure("buy", "sum", cap=6.0), timeseries=True),
        until=day1 + 2 * DAY,  # day 3, 20:00
    )

    daily = rollup_run(spec).daily["revenue"]

    assert [d.date for d in daily] == [dt.date(2024, 5, 10), dt.date(2024, 5, 11), dt.date(2024, 5, 12)]
    assert dict(daily[0].variants)["control"] == SampleStats(n=1, sum=4.0, sum_squares=16.0)
    assert dict(daily[1].variants)["control"] == SampleStats(n=2, sum=7.0, sum_squares=37.0)
    assert dict(daily[2].variants)["control"] == SampleStats(n=2, sum=7.0, sum_squares=37.0)


def test_rollup__environments__only_the_analysed_environments_count(clickhouse):
    # Given production traffic, and test traffic from development and staging keys mixed in
    write(
        exposures=[
            Exposure("u1", "control", T0),
            Exposure("tester", "treatment", T0, environment="development"),  # a test unit only
            Exposure("u3", "treatment", T0),
            Exposure("u3", "control", T0 - HOUR, environment="staging"),  # a tester reusing a real id
        ],
        events=[
            Event("u1", "buy", T0 + HOUR),
            Event("u1", "buy", T0 + 2 * HOUR, environment="staging"),
            Event("tester", "buy", T0 + HOUR, environment="development"),
            Event("u3", "buy", T0 + HOUR, environment="development"),
        ],
    )
    metric = MetricSpec("orders", "count", Measure("buy", "count"), timeseries=True)
    production = RollupSpec(
        experiment="exp", variants=("control", "treatment"), until=UNTIL, metrics=(metric,),
        environments=("production",),
    )  # fmt: skip

    # When
    analysed = rollup_run(production)
    everything = rollup_run(spec_of(metric))

    # Then: only production's units and events; u3 entered at its production exposure, in treatment
    assert analysed.units == {"control": 1, "treatment": 1}
    assert analysed.multiple_exposures == 0 and analysed.first_exposure_at == T0
    assert by_variant(analysed, "orders") == {
        "control": SampleStats(n=1, sum=1.0, sum_squares=1.0),
        "treatment": SampleStats(n=1, sum=0.0, sum_squares=0.0),
    }
    assert dict(analysed.daily["orders"][-1].variants) == by_variant(analysed, "orders")
    # ... while every environment (environments=None) mixes the test traffic in
    assert everything.units == {"control": 1, "treatment": 1} and everything.multiple_exposures == 1
    assert by_variant(everything, "orders")["control"].sum == 2.0


def test_rollup__no_exposures__every_metric_empty(clickhouse):
    spec = spec_of(MetricSpec("orders", "count", Measure("buy", "count"), timeseries=True))

    rollup = rollup_run(spec)

    assert rollup.units == {"control": 0, "treatment": 0}
    assert by_variant(rollup, "orders")["control"] == SampleStats(n=0, sum=0.0, sum_squares=0.0)
    assert rollup.daily == {}


# --- generated data against the reference ------------------------------------------------------------------
GENERATED_METRICS = (
    MetricSpec("conversion", "binomial", Measure("purchase", "binomial", window_hours=48), timeseries=True),
    MetricSpec(
        "revenue",
        "sum",
        Measure("purchase", "sum", cap=60.0),
        cuped=True,
        cuped_lookback_days=3,
        timeseries=True,
    ),
    MetricSpec("orders", "count", Measure("purchase", "count")),
    MetricSpec(
        "aov",
        "ratio",
        Measure("purchase", "sum", window_hours=72, cap=150.0),
        denominator=Measure("purchase", "count"),
        cuped=True,
        cuped_lookback_days=2,
        timeseries=True,
    ),
    MetricSpec(
        "views",
        "count",
        Measure("view", "count", window_hours=24, cap=5.0),
        cuped=True,
        cuped_lookback_days=7,
    ),
    MetricSpec("errors", "count", Measure("error", "count")),
    MetricSpec(
        "plain_ratio", "ratio", Measure("view", "sum"), denominator=Measure("purchase", "binomial", 48)
    ),
)


TEST_ENVIRONMENTS = ("development", "staging")


def generate(seed: int, *, units: int = 120) -> tuple[RollupSpec, list[Exposure], list[Event], list[Event]]:
    """Exposures and events with every edge the semantics name; the last list is replays."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 5, 1, 6, 0, tzinfo=dt.UTC)
    variants = ("control", "treatment", "b")
    exposures: list[Exposure] = []
    events: list[Event] = []
    for i in range(units):
        unit = f"user-{i}"
        variant = "retired" if rng.random() < 0.04 else rng.choice(variants)  # a variant since removed
        t0 = start + rng.randrange(0, 5 * 86_400_000) * MS
        exposures.append(Exposure(unit, variant, t0))
        for _ in range(rng.randrange(0, 3)):  # repeated exposures, later and in any order
            exposures.append(Exposure(unit, variant, t0 + rng.randrange(1, 3 * 86_400_000) * MS))
        if rng.random() < 0.05:
            exposures.append(Exposure(unit, rng.choice([v for v in variants if v != variant]), t0 + HOUR))
        if rng.random() < 0.2:
            exposures.append(Exposure(unit, "control", t0 - DAY, experiment="another"))
        if rng.random() < 0.1:  # the same id seen from a test key, in any variant, even earlier
            test_variant = rng.choice(variants)
            exposures.append(
                Exposure(unit, test_variant, t0 - HOUR, environment=rng.choice(TEST_ENVIRONMENTS))
            )
        for _ in range(rng.randrange(0, 14)):
            offset = rng.randrange(-9 * 86_400_000, 9 * 86_400_000)
            name = rng.choice(["purchase", "purchase", "view", "view", "view", "error", "unrelated"])
            value = round(rng.uniform(-5.0, 90.0), 2)
            environment = rng.choice(TEST_ENVIRONMENTS) if rng.random() < 0.1 else "production"
            events.append(Event(unit, name, t0 + offset * MS, value, uuid.uuid4(), environment))
        # the edges: exactly t0, exactly a window's end, exactly a look-back's start
        edges = [
            t0,
            t0 + 48 * HOUR,
            t0 + 72 * HOUR,
            t0 + 24 * HOUR,
            t0 - 3 * DAY,
            t0 - 2 * DAY,
            t0 - 7 * DAY,
            t0 - MS,
        ]
        for when in rng.sample(edges, 3):
            events.append(Event(unit, rng.choice(["purchase", "view"]), when, 10.0, uuid.uuid4()))
    for i in range(20):  # units outside the experiment
        events.append(Event(f"stranger-{i}", "purchase", start + i * HOUR, 50.0, uuid.uuid4()))
    for i in range(10):  # test units, only ever seen from test keys
        when = start + i * HOUR
        exposures.append(Exposure(f"tester-{i}", variants[i % 3], when, environment="development"))
        events.append(Event(f"tester-{i}", "purchase", when + HOUR, 20.0, uuid.uuid4(), "development"))
    replays = rng.sample(events, len(events) // 10)
    spec = RollupSpec(
        experiment="exp",
        variants=variants,
        until=start + 7 * DAY + 5 * HOUR,
        metrics=GENERATED_METRICS,
        environments=("production", "staging"),  # development is the test traffic left out
    )
    return spec, exposures, events, replays


def test_rollup__generated_data__totals_match_python_reference(clickhouse):
    spec, exposures, events, replays = generate(seed=7)
    write(exposures, events)
    write(events=replays)

    rollup = rollup_run(spec)

    units, multiple = _units(spec, exposures)
    assert rollup.units == {v: sum(1 for _, w in units.values() if w == v) for v in spec.variants}
    assert rollup.multiple_exposures == multiple > 0
    assert rollup.unknown_variant_units > 0
    expected = reference_rollup(spec, exposures, events)
    for metric in spec.metrics:
        assert_stats_equal(rollup.totals[metric.key], expected[metric.key])


def test_rollup__generated_data__daily_cumulative_stats_match_reference(clickhouse):
    spec, exposures, events, replays = generate(seed=11, units=80)
    write(exposures, events + replays)

    rollup = rollup_run(spec)

    series_metrics = [m.key for m in spec.metrics if m.timeseries]
    assert sorted(rollup.daily) == sorted(series_metrics)
    for key in series_metrics:
        days = rollup.daily[key]
        assert days[-1].date == spec.until.date()
        for day in days:
            expected = reference_rollup(spec, exposures, events, day=day.date)
            assert_stats_equal(day.variants, expected[key])
        assert_stats_equal(days[-1].variants, rollup.totals[key])


def test_rollup_query__exact_unit_keys__same_sums_as_hashed_keys(clickhouse):
    from analytics import clickhouse as ch
    from analytics.rollup.query import QUERY_SETTINGS

    spec, exposures, events, _ = generate(seed=3, units=40)
    write(exposures, events)

    answers = []
    for exact in (False, True):
        statement = RollupQuery(spec, exact_unit_keys=exact).metrics_statement()
        answers.append(ch.query(statement.sql, statement.params, settings=QUERY_SETTINGS))

    hashed, exact = answers
    assert len(hashed) == len(exact) > 0
    for a, b in zip(hashed, exact, strict=True):
        assert a.keys() == b.keys()
        for column in a:
            assert flatten(a[column]) == pytest.approx(flatten(b[column]), rel=1e-12), column


def flatten(value) -> list[float]:
    """Numbers of a column's value, nested ``sumMap`` answers included, in order."""
    if isinstance(value, list | tuple):
        return [number for item in value for number in flatten(item)]
    return [float(value)]


def test_rollup_query__values__always_bound_never_in_the_sql(clickhouse):
    # Given names that would break (or inject into) SQL if they were formatted into it
    experiment, event = "x'); DROP TABLE events; --", "it's {p_events:String}"
    environment = "prod') OR 1 = 1 --"
    spec = RollupSpec(
        experiment=experiment,
        variants=("c'1", "t\\2"),
        until=UNTIL,
        environments=(environment,),
        metrics=(
            MetricSpec(
                "m", "sum", Measure(event, "sum", window_hours=5, cap=7.5), cuped=True, timeseries=True
            ),
        ),
    )
    write(
        exposures=[Exposure("u", "t\\2", T0, experiment=experiment, environment=environment)],
        events=[Event("u", event, T0 + HOUR, value=9.0, environment=environment)],
    )

    query = RollupQuery(spec)
    statements = [query.units_statement(), query.metrics_statement()]
    rollup = rollup_run(spec)

    for statement in statements:
        assert "DROP" not in statement.sql and "it's" not in statement.sql and "7.5" not in statement.sql
        assert "OR 1 = 1" not in statement.sql
        assert experiment in statement.params.values()
    assert dict(rollup.totals["m"])["t\\2"] == CupedStats(
        n=1, sum=7.5, sum_squares=56.25, pre_sum=0.0, pre_sum_squares=0.0, sum_products=0.0
    )
    assert clickhouse.count("events") == 1


def test_stats_class__metric_kinds__the_engines_dataclasses():
    plain = Measure("e", "count")
    assert stats_class(MetricSpec("a", "count", plain)) is SampleStats
    assert stats_class(MetricSpec("a", "count", plain, cuped=True)) is CupedStats
    assert stats_class(MetricSpec("a", "ratio", plain, denominator=plain)) is RatioStats
    assert stats_class(MetricSpec("a", "ratio", plain, denominator=plain, cuped=True)) is RatioCupedStats
