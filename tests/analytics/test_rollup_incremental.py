"""Incremental refresh equals a cold refresh (docs/analysis.md, "Incremental refresh"), on both backends.

Each scenario sends data in batches, as clients do, and refreshes after each one: the incremental
roll-up (``rollup_refresh``, from its own state) must give what the cold roll-up (``rollup_run``,
every event read; itself checked against a Python reference in test_rollup.py) gives over the same
rows: units, exclusions, every sufficient statistic, every day of every time series. The batches are
built to break an incremental roll-up: late exposures that move t0 earlier, units that switch variant
late, events that arrive after their window closed, CUPED covariates that arrive after the unit
entered, replays, events dated after the analysis time, rows that become visible after a refresh
although stamped before it, metric definitions that change, an experiment that stops.
"""

import dataclasses
import datetime as dt
import random
import uuid

import pytest

from analytics.ingestion import services as ingestion
from analytics.rollup import Measure, MetricSpec, RollupSpec, rollup_run
from analytics.rollup.incremental import RollupState, rollup_refresh
from tests.analytics.test_rollup import (
    GENERATED_METRICS,
    Event,
    Exposure,
    assert_stats_equal,
    reference_rollup,
)

pytestmark = pytest.mark.django_db

START = dt.datetime(2024, 5, 1, 6, 0, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
MARGIN = dt.timedelta(seconds=60)  # the watermark's safety margin in these tests
VARIANTS = ("control", "treatment", "b")
NAMES = ["purchase", "purchase", "view", "view", "view", "error", "unrelated"]


def write(exposures=(), events=(), *, received_at: dt.datetime) -> None:
    """Store rows through the write path, stamped ``received_at`` (when the API accepted them)."""
    if exposures:
        ingestion.exposures_write(
            rows=[
                {"experiment": e.experiment, "variant": e.variant, "unit_id": e.unit_id,
                 "timestamp": e.timestamp, "environment": e.environment}
                for e in exposures
            ],
            received_at=received_at,
        )  # fmt: skip
    if events:
        ingestion.events_write(
            rows=[
                {"event_id": e.event_id, "name": e.name, "unit_id": e.unit_id, "value": e.value,
                 "timestamp": e.timestamp, "environment": e.environment}
                for e in events
            ],
            received_at=received_at,
        )  # fmt: skip


def assert_same_rollup(incremental, cold) -> None:
    assert incremental.units == cold.units
    assert incremental.multiple_exposures == cold.multiple_exposures
    assert incremental.unknown_variant_units == cold.unknown_variant_units
    assert incremental.first_exposure_at == cold.first_exposure_at
    assert incremental.last_exposure_at == cold.last_exposure_at
    assert sorted(incremental.totals) == sorted(cold.totals)
    for key in cold.totals:
        assert_stats_equal(incremental.totals[key], cold.totals[key])
    assert sorted(incremental.daily) == sorted(cold.daily)
    for key, days in cold.daily.items():
        assert [d.date for d in incremental.daily[key]] == [d.date for d in days], key
        for got, want in zip(incremental.daily[key], days, strict=True):
            assert_stats_equal(got.variants, want.variants)


class Scenario:
    """Randomised traffic, sent in batches between refreshes, with the rows kept for the reference."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.exposures: list[Exposure] = []
        self.events: list[Event] = []
        self.t0: dict[str, dt.datetime] = {}
        self.variant: dict[str, str] = {}
        self.units = 0

    def _events_of(self, unit: str, t0: dt.datetime, now: dt.datetime, count: int) -> list[Event]:
        rng, events = self.rng, []
        for _ in range(count):
            # from before the longest look-back to an hour after "now" (future-dated: counted later)
            offset = rng.randrange(-9 * 86_400_000, 9 * 86_400_000)
            when = min(t0 + offset * MS, now + rng.randrange(0, 3_600_000) * MS)
            environment = "development" if rng.random() < 0.05 else "production"
            events.append(
                Event(
                    unit,
                    rng.choice(NAMES),
                    when,
                    round(rng.uniform(-5.0, 90.0), 2),
                    uuid.uuid4(),
                    environment,
                )
            )
        # the edges of windows and look-backs, exactly
        for edge in rng.sample(
            [t0, t0 + 48 * HOUR, t0 + 72 * HOUR, t0 + 24 * HOUR, t0 - 3 * DAY, t0 - MS], 2
        ):
            if edge < now:
                events.append(Event(unit, rng.choice(["purchase", "view"]), edge, 10.0, uuid.uuid4()))
        return events

    def new_units(self, count: int, *, since: dt.datetime, now: dt.datetime) -> tuple[list, list]:
        exposures, events = [], []
        for _ in range(count):
            unit = f"user-{self.units}"
            self.units += 1
            t0 = since + self.rng.randrange(0, int((now - since) / MS)) * MS
            variant = "retired" if self.rng.random() < 0.04 else self.rng.choice(VARIANTS)
            self.t0[unit], self.variant[unit] = t0, variant
            exposures.append(Exposure(unit, variant, t0))
            if self.rng.random() < 0.3:  # a repeated exposure, later
                exposures.append(
                    Exposure(unit, variant, min(t0 + self.rng.randrange(1, 86_400_000) * MS, now))
                )
            if self.rng.random() < 0.1:  # the same unit seen from a test key: never counts
                exposures.append(
                    Exposure(unit, self.rng.choice(VARIANTS), t0 - HOUR, environment="development")
                )
            events += self._events_of(unit, t0, now, self.rng.randrange(0, 10))
        return exposures, events

    def late_traffic(self, now: dt.datetime) -> tuple[list, list]:
        """What arrives late for units already in: the cases an incremental roll-up must not miss."""
        rng, exposures, events = self.rng, [], []
        known = sorted(self.t0)
        for unit in rng.sample(known, min(len(known), 12)):  # events in, before and after windows
            events += self._events_of(unit, self.t0[unit], now, rng.randrange(1, 5))
        for unit in rng.sample(known, min(len(known), 4)):  # a late exposure moving t0 earlier
            earlier = self.t0[unit] - rng.randrange(3_600_000, 3 * 86_400_000) * MS
            self.t0[unit] = earlier
            exposures.append(Exposure(unit, self.variant[unit], earlier))
        for unit in rng.sample(known, min(len(known), 2)):  # a unit seen late in another variant
            other = rng.choice([v for v in VARIANTS if v != self.variant[unit]])
            exposures.append(Exposure(unit, other, self.t0[unit] + rng.randrange(0, 86_400_000) * MS))
        sent = [e for e in self.events if e.timestamp < now]
        events += rng.sample(sent, min(len(sent), 8))  # replays: the same event_id again
        return exposures, events

    def send(self, exposures: list, events: list, *, received_at: dt.datetime) -> None:
        write(exposures, events, received_at=received_at)
        self.exposures += exposures
        self.events += events


def refresh(spec: RollupSpec, state: RollupState | None, read_at: dt.datetime, **kwargs):
    rollup = rollup_refresh(spec, previous=state, read_at=read_at, watermark=read_at - MARGIN, **kwargs)
    assert_same_rollup(rollup, rollup_run(spec))
    return rollup


def spec_at(until: dt.datetime, metrics=GENERATED_METRICS) -> RollupSpec:
    return RollupSpec(
        experiment="exp",
        variants=VARIANTS,
        until=until,
        metrics=metrics,
        environments=("production", "staging"),
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_rollup_refresh__batches_of_late_data__equals_cold_refresh_every_time(clickhouse, seed):
    scenario = Scenario(seed)
    now = START + 3 * DAY
    scenario.send(
        *scenario.new_units(60, since=START, now=now), received_at=now - 30 * dt.timedelta(seconds=1)
    )

    first = refresh(spec_at(now), None, now)
    assert first.kind == "full" and first.state.units > 0

    state = first.state
    for step in range(1, 5):
        # rows stamped before the last refresh started but visible only after it (an insert in flight)
        scenario.send(*scenario.late_traffic(now), received_at=now - 10 * dt.timedelta(seconds=1))
        previous, now = now, now + 6 * HOUR
        scenario.send(
            *scenario.new_units(8, since=previous, now=now), received_at=now - 40 * dt.timedelta(seconds=1)
        )
        scenario.send(*scenario.late_traffic(now), received_at=now - 30 * dt.timedelta(seconds=1))

        rollup = refresh(spec_at(now), state, now)

        assert rollup.kind == "incremental", step
        assert rollup.recomputed_metrics == ()
        assert rollup.state.updates == step  # the sums were updated by differences, not re-aggregated
        state = rollup.state
    assert rollup.multiple_exposures > 0 and rollup.unknown_variant_units > 0
    # and the cold refresh it equals is the reference's answer
    expected = reference_rollup(spec_at(now), scenario.exposures, scenario.events)
    for metric in GENERATED_METRICS:
        assert_stats_equal(rollup.totals[metric.key], expected[metric.key])


def test_rollup_refresh__event_dated_after_the_analysis_time__counted_once_that_time_passes(clickhouse):
    # Given an event dated 30 minutes ahead, received (and so not an arrival) before the first refresh
    now = START + DAY
    write(
        [Exposure("u", "control", START)],
        [Event("u", "purchase", now + 30 * dt.timedelta(minutes=1), 5.0, uuid.uuid4())],
        received_at=now - HOUR,
    )
    metrics = (MetricSpec("revenue", "sum", Measure("purchase", "sum"), timeseries=True),)
    first = refresh(spec_at(now, metrics), None, now)
    assert dict(first.totals["revenue"])["control"].sum == 0.0

    # When the next refresh's analysis time has passed it, with nothing new arriving
    later = refresh(spec_at(now + HOUR, metrics), first.state, now + HOUR)

    # Then it counts
    assert later.kind == "incremental"
    assert dict(later.totals["revenue"])["control"].sum == 5.0


def test_rollup_refresh__replays_after_the_state_counted_them__equal_to_cold_each_time(clickhouse):
    # Given units whose events the state has counted (the arrivals are added to it, not re-read)
    now = START + 3 * DAY
    units = [f"u{i}" for i in range(6)]
    counted = [
        Event(unit, "purchase", START + (i + 1) * HOUR, 10.0 + i, uuid.uuid4())
        for i, unit in enumerate(units)
    ]
    write(
        [Exposure(unit, VARIANTS[i % 3], START) for i, unit in enumerate(units)],
        counted,
        received_at=now - HOUR,
    )
    state = refresh(spec_at(now), None, now).state
    first, second, third, fourth, fifth, sixth = counted

    # When replays arrive: the same row again; the same event_id with another value, from another
    # environment, and dated in another month; and two new rows sharing an event_id but not a value
    twin = uuid.uuid4()
    replays = [
        first,
        dataclasses.replace(second, value=99.0),
        dataclasses.replace(third, environment="development"),
        dataclasses.replace(fourth, timestamp=START - 20 * DAY),  # April: its own partition, counts too
        Event(fifth.unit_id, "purchase", START + 30 * HOUR, 5.0, twin),
        Event(fifth.unit_id, "purchase", START + 30 * HOUR, 7.0, twin),
        dataclasses.replace(sixth, value=sixth.value),  # identical again, in the same batch as the others
    ]
    for step, batch in enumerate([replays[:4], replays[4:], replays]):
        now += HOUR
        write(events=batch, received_at=now - 2 * MARGIN)
        rollup = refresh(spec_at(now), state, now)  # equal to the cold refresh of the same rows

        # Then each refresh stays incremental and equals the cold roll-up
        assert rollup.kind == "incremental", step
        state = rollup.state


def test_rollup_refresh__metric_definitions_change__only_changed_metrics_recomputed(clickhouse):
    scenario = Scenario(5)
    now = START + 3 * DAY
    scenario.send(*scenario.new_units(50, since=START, now=now), received_at=now - HOUR)
    state = refresh(spec_at(now), None, now).state

    # When caps change (no recompute: applied when aggregating), a window changes, a metric is
    # added and another removed, and late data arrives meanwhile
    by_key = {m.key: m for m in GENERATED_METRICS}
    changed = (
        dataclasses.replace(by_key["revenue"], measure=Measure("purchase", "sum", cap=20.0)),
        dataclasses.replace(by_key["conversion"], measure=Measure("purchase", "binomial", window_hours=12)),
        by_key["aov"],
        MetricSpec("view_value", "sum", Measure("view", "sum", window_hours=6), cuped=True, cuped_lookback_days=1,
                   timeseries=True),
    )  # fmt: skip
    now += 6 * HOUR
    scenario.send(*scenario.late_traffic(now), received_at=now - HOUR)
    rollup = refresh(spec_at(now, changed), state, now)

    # Then the refresh stays incremental and rebuilds only the metrics whose raw values are new
    assert rollup.kind == "incremental"
    assert rollup.recomputed_metrics == ("conversion", "view_value")

    # and keeps up afterwards
    now += 6 * HOUR
    scenario.send(*scenario.late_traffic(now), received_at=now - HOUR)
    assert refresh(spec_at(now, changed), rollup.state, now).kind == "incremental"


def test_rollup_refresh__experiment_stops__late_data_before_the_stop_counts(clickhouse):
    scenario = Scenario(9)
    now = START + 3 * DAY
    scenario.send(*scenario.new_units(50, since=START, now=now), received_at=now - HOUR)
    state = refresh(spec_at(now), None, now).state

    # When the experiment stops and data keeps arriving, dated before and after the stop
    stopped_at = now + 2 * HOUR
    for _ in range(3):
        now += 6 * HOUR
        scenario.send(*scenario.late_traffic(now), received_at=now - HOUR)
        rollup = refresh(spec_at(stopped_at), state, now)
        assert rollup.kind == "incremental"
        state = rollup.state


REVENUE = MetricSpec("revenue", "sum", Measure("purchase", "sum"))
VIEWS = MetricSpec("views", "sum", Measure("view", "count"))


def test_rollup_refresh__metric_removed_then_added_again__no_stale_value_kept(clickhouse):
    # Given a unit whose purchase counted for revenue, and revenue then removed
    now = START + DAY
    purchase = Event("u1", "purchase", START + HOUR, 10.0, uuid.uuid4())
    write([Exposure("u1", "control", START), Exposure("u2", "treatment", START)],
          [purchase, Event("u2", "view", START + HOUR, 1.0, uuid.uuid4())], received_at=now - HOUR)  # fmt: skip
    state = refresh(spec_at(now, (REVENUE, VIEWS)), None, now).state
    now += HOUR
    state = refresh(spec_at(now, (VIEWS,)), state, now).state
    # When the purchase is replaced by a replay from an environment not analysed, while no metric
    # reads purchases (the unit is not touched), and revenue comes back
    now += HOUR
    write(events=[dataclasses.replace(purchase, environment="development")], received_at=now - 2 * MARGIN)
    state = refresh(spec_at(now, (VIEWS,)), state, now).state
    now += HOUR
    rollup = refresh(spec_at(now, (REVENUE, VIEWS)), state, now)

    # Then revenue is computed again for every unit, the untouched one included (refresh() compares)
    assert rollup.kind == "incremental" and rollup.recomputed_metrics == ("revenue",)


def test_rollup_refresh__previous_refresh_failed_after_writing_state__sums_aggregated_again(
    clickhouse, monkeypatch
):
    from analytics.clickhouse import ClickHouseError
    from analytics.rollup.state import StateQuery

    now = START + DAY
    write([Exposure("u1", "control", START)], [Event("u1", "purchase", START + HOUR, 10.0, uuid.uuid4())],
          received_at=now - HOUR)  # fmt: skip
    state = refresh(spec_at(now, (REVENUE,)), None, now).state
    now += HOUR
    write([Exposure("u2", "treatment", now - 2 * HOUR)],
          [Event("u1", "purchase", now - 2 * HOUR, 5.0, uuid.uuid4())], received_at=now - 2 * MARGIN)  # fmt: skip

    # When a refresh fails after writing the touched units' state (a timeout), so its sums are lost
    def timeout(self):
        raise ClickHouseError("timeout after the state was written")

    with monkeypatch.context() as patch:
        patch.setattr(StateQuery, "units_statement", timeout)
        with pytest.raises(ClickHouseError):
            rollup_refresh(spec_at(now, (REVENUE,)), previous=state, read_at=now, watermark=now - MARGIN)

    # Then the next refresh, from the last saved state, aggregates the state again and is right
    now += HOUR
    rollup = refresh(spec_at(now, (REVENUE,)), state, now)
    assert rollup.kind == "incremental" and rollup.state.updates == 0


def test_rollup_refresh__a_millisecond_after_a_definition_change__each_unit_counted_once(clickhouse):
    now = START + DAY
    write([Exposure("u1", "control", START), Exposure("u2", "treatment", START)],
          [Event("u1", "purchase", START + HOUR, 10.0, uuid.uuid4())], received_at=now - HOUR)  # fmt: skip
    state = refresh(spec_at(now, (REVENUE,)), None, now).state
    now += HOUR
    state = refresh(spec_at(now, (REVENUE, VIEWS)), state, now).state  # views merged into every row
    write(events=[Event("u1", "purchase", now - 2 * HOUR, 5.0, uuid.uuid4())],
          received_at=now - 30 * dt.timedelta(seconds=1))  # fmt: skip
    now += MS  # the next refresh reads a millisecond later
    state = refresh(spec_at(now, (REVENUE, VIEWS)), state, now).state
    now += HOUR
    write(events=[Event("u1", "purchase", now - 2 * HOUR, 1.0, uuid.uuid4())], received_at=now - 2 * MARGIN)

    assert refresh(spec_at(now, (REVENUE, VIEWS)), state, now).kind == "incremental"


def test_rollup_refresh__unit_seen_in_a_second_variant__not_recomputed_at_every_refresh(clickhouse):
    from analytics import clickhouse as ch

    # Given a unit with an event dated after the analysis time, then seen in a second variant
    now = START + DAY
    write([Exposure("u1", "control", START), Exposure("u2", "treatment", START)],
          [Event("u1", "purchase", now + 30 * dt.timedelta(minutes=1), 4.0, uuid.uuid4()),
           Event("u2", "purchase", START + HOUR, 3.0, uuid.uuid4())], received_at=now - HOUR)  # fmt: skip
    state = refresh(spec_at(now), None, now).state
    now += HOUR
    write([Exposure("u1", "treatment", START + HOUR)], received_at=now - 2 * MARGIN)
    state = refresh(spec_at(now), state, now).state

    # When later refreshes run after its pending event's time
    for _ in range(2):
        now += HOUR
        state = refresh(spec_at(now), state, now).state

    # Then the unit, no longer analysed, is not touched again for that event
    touched = ch.query(
        "SELECT count() AS n FROM rollup_touched WHERE experiment = 'exp' AND refresh_id = {r:UInt64}",
        {"r": state.refresh_id},
    )
    assert touched == [{"n": 0}]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda spec: dataclasses.replace(spec, variants=("control", "treatment")), "variants"),
        (lambda spec: dataclasses.replace(spec, environments=("production",)), "environments"),
        (lambda spec: dataclasses.replace(spec, until=spec.until - DAY), "analysis time moved back"),
    ],
)
def test_rollup_refresh__experiment_definition_changes__full_recompute(clickhouse, change, reason):
    scenario = Scenario(3)
    now = START + 3 * DAY
    scenario.send(*scenario.new_units(30, since=START, now=now), received_at=now - HOUR)
    state = refresh(spec_at(now), None, now).state

    rollup = refresh(change(spec_at(now + HOUR)), state, now + HOUR)

    assert rollup.kind == "full", reason
    assert rollup.state.generation != state.generation


def test_rollup_refresh__state_lost_or_asked__full_recompute(clickhouse):
    from tests.support.clickhouse import clickhouse_truncate

    scenario = Scenario(4)
    now = START + 3 * DAY
    scenario.send(*scenario.new_units(30, since=START, now=now), received_at=now - HOUR)
    state = refresh(spec_at(now), None, now).state

    assert refresh(spec_at(now + HOUR), state, now + HOUR, full=True).kind == "full"

    # When the state tables are emptied behind the refresh's back (the rows survive in events)
    rows = scenario.exposures, scenario.events
    clickhouse_truncate(clickhouse.database)
    scenario.send(*rows, received_at=now - HOUR)  # the raw data again, stamped long ago
    rollup = refresh(spec_at(now + 2 * HOUR), state, now + 2 * HOUR)

    assert rollup.kind == "full"


def test_rollup_refresh__previous_arrivals_gone__full_recompute(clickhouse, settings):
    from analytics import clickhouse as ch

    # Given a state whose refresh listed the rows it counted beyond its watermark
    scenario = Scenario(6)
    now = START + 3 * DAY
    scenario.send(
        *scenario.new_units(30, since=START, now=now), received_at=now - 30 * dt.timedelta(seconds=1)
    )
    state = refresh(spec_at(now), None, now).state
    assert state.arrivals > 0

    # When that list is gone (its TTL passed: the experiment was not refreshed for a week)
    table = "rollup_arrivals_local" if settings.CLICKHOUSE_CLUSTER else "rollup_arrivals"  # a shard's own
    ch.command("TRUNCATE TABLE {table:Identifier}", {"table": table})
    rollup = refresh(spec_at(now + HOUR), state, now + HOUR)

    # Then the refresh cannot tell counted rows from new ones, and recomputes everything
    assert rollup.kind == "full"


def test_rollup_state__round_trips_as_json():
    state = RollupState(
        generation="g", units_key="u", value_keys=("a", "b"), watermark=START, until=START + DAY, units=3,
        kind="incremental",
    )  # fmt: skip

    assert RollupState.from_dict(state.to_dict()) == state
    assert RollupState.from_dict({"generation": "g"}) is None
    assert RollupState.from_dict(None) is None
