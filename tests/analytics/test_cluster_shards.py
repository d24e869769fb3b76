"""The roll-up and the write path on a ClickHouse cluster, for real inside chDB.

These run in the cluster suite only (``test_clickhouse_cluster.py::test_cluster_suite__...`` starts
it in a process of its own, whose chDB has the clusters of ``tests/support/clickhouse_cluster.py``);
in a single-server run they are skipped. The suite's tables are the ``one_shard`` cluster's:
``Distributed`` tables over ``<table>_local``.
"""

import datetime as dt
from dataclasses import fields
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from analytics import clickhouse as ch
from analytics.rollup import RollupQuery, rollup_run
from analytics.rollup.query import QUERY_SETTINGS, Shards
from tests.analytics.test_rollup import T0, Event, Exposure, flatten, generate, write
from tests.support.clickhouse_cluster import ONE_SHARD, TWO_SHARDS

SECOND = dt.timedelta(seconds=1)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not (django_settings.CLICKHOUSE_CLUSTER and django_settings.CLICKHOUSE_EMBEDDED_CONFIG),
        reason="runs in the cluster suite (test_clickhouse_cluster.py starts it with a chDB cluster)",
    ),
]


def _tables(database: str) -> dict[str, str]:
    rows = ch.query(
        "SELECT name, if(engine = 'View', engine, engine_full) AS engine FROM system.tables WHERE database = {database:String}",
        {"database": database},
        use_database=False,
    )
    return {row["name"]: row["engine"] for row in rows}


def test_cluster_schema__migrated__distributed_tables_over_shard_local_tables(clickhouse):
    tables = _tables(clickhouse.database)

    for table in ("events", "exposures"):
        assert tables[table].startswith(
            f"Distributed('{ONE_SHARD}', '{clickhouse.database}', '{table}_local'"
        )
        assert "cityHash64(unit_id)" in tables[table]
        assert tables[f"{table}_local"].startswith("ReplacingMergeTree")
        assert tables[f"{table}_dedup_local"] == "View"
    assert tables["schema_migrations"].startswith("MergeTree")  # no unit_id: not sharded


def test_clickhouse_check__cluster__prints_its_shards_and_replicas(clickhouse):
    out = StringIO()

    call_command("clickhouse_check", stdout=out)

    assert f"Cluster {ONE_SHARD}: shards 1, replicas 1" in out.getvalue()


def test_cluster_insert__through_the_distributed_table__on_its_shard_when_acknowledged(clickhouse):
    # Given the Distributed table's default, queueing rows on disk and sending them later
    # When a batch is written through the write path
    write(events=[Event(f"u{i}", "view", T0) for i in range(25)])

    # Then the shard's own table has it by the time the write returns (a foreground insert)
    assert clickhouse.count("events_local") == 25


def _scaled(stats, factor: int) -> dict[str, float]:
    return {f.name: getattr(stats, f.name) * factor for f in fields(stats)}


def _as_dict(stats) -> dict[str, float]:
    return {f.name: getattr(stats, f.name) for f in fields(stats)}


def assert_scaled(actual, expected, factor: int) -> None:
    """``actual`` statistics are ``factor`` times ``expected`` (counts exactly, sums to rounding)."""
    assert [v for v, _ in actual] == [v for v, _ in expected]
    for (_, a), (_, e) in zip(actual, expected, strict=True):
        assert a.n == e.n * factor
        assert _as_dict(a) == pytest.approx(_scaled(e, factor), rel=1e-12, abs=1e-9)


def test_rollup__two_shards_of_one_server__every_statistic_twice_the_single_server_sums(clickhouse, settings):
    # Given data with every edge of the semantics (caps, binomials, windows, CUPED, ratios, time series,
    # several exposures, units in two variants, replays)
    spec, exposures, events, replays = generate(seed=5, units=90)
    write(exposures, events)
    write(events=replays)

    # When the roll-up runs on one server (the Distributed tables read whole), on the one-shard cluster
    # and on the two-shard cluster whose shards are both this server
    settings.CLICKHOUSE_CLUSTER = ""
    single = rollup_run(spec)
    settings.CLICKHOUSE_CLUSTER = ONE_SHARD
    one = rollup_run(spec)
    settings.CLICKHOUSE_CLUSTER = TWO_SHARDS
    two = rollup_run(spec)

    # Then one shard gives the single-server answer, and two shards exactly twice every count and sum:
    # each shard ran the whole per-unit roll-up on its own (a join or grouping on the initiator would
    # count units once and square sums to four times)
    assert single.units and sum(single.units.values()) > 0
    for rollup, factor in ((one, 1), (two, 2)):
        assert rollup.units == {v: n * factor for v, n in single.units.items()}
        assert rollup.multiple_exposures == single.multiple_exposures * factor > 0
        assert rollup.unknown_variant_units == single.unknown_variant_units * factor
        assert (rollup.first_exposure_at, rollup.last_exposure_at, rollup.last_event_at) == (
            single.first_exposure_at,
            single.last_exposure_at,
            single.last_event_at,
        )
        assert rollup.totals.keys() == single.totals.keys()
        for key, variants in single.totals.items():
            assert_scaled(rollup.totals[key], variants, factor)
        assert rollup.daily.keys() == single.daily.keys() and single.daily
        for key, days in single.daily.items():
            assert [d.date for d in rollup.daily[key]] == [d.date for d in days]
            for day, expected in zip(rollup.daily[key], days, strict=True):
                assert_scaled(day.variants, expected.variants, factor)


def test_rollup_query__two_shards__exact_unit_keys_same_sums_as_hashed_keys(clickhouse):
    spec, exposures, events, _ = generate(seed=3, units=40)
    write(exposures, events)
    shards = Shards(cluster=TWO_SHARDS, database=clickhouse.database)

    answers = []
    for exact in (False, True):
        statement = RollupQuery(spec, exact_unit_keys=exact, shards=shards).metrics_statement()
        assert "cluster({p_cluster:String}, view(" in statement.sql and "events_dedup_local" in statement.sql
        answers.append(ch.query(statement.sql, statement.params, settings=QUERY_SETTINGS))

    hashed, exact = answers
    assert len(hashed) == len(exact) > 0
    for a, b in zip(hashed, exact, strict=True):
        assert a.keys() == b.keys()
        for column in a:
            assert flatten(a[column]) == pytest.approx(flatten(b[column]), rel=1e-12), column


def test_distributed_tables_in_a_nested_join__two_shards__joined_on_the_initiator(clickhouse):
    # Why the roll-up reads the shards' own tables inside cluster(view(...)) rather than the Distributed
    # tables: given Distributed tables over the two-shard cluster of this one server
    ch.command(
        "CREATE TABLE IF NOT EXISTS events_two AS events_local "
        "ENGINE = Distributed(two_shards, currentDatabase(), events_local, cityHash64(unit_id))"
    )
    ch.command(
        "CREATE TABLE IF NOT EXISTS exposures_two AS exposures_local "
        "ENGINE = Distributed(two_shards, currentDatabase(), exposures_local, cityHash64(unit_id))"
    )
    assert TWO_SHARDS == "two_shards"
    write(
        exposures=[Exposure(f"u{i}", "a", T0) for i in range(10)],
        events=[Event(f"u{i}", "buy", T0, value=float(i)) for i in range(10)],
    )

    # When a per-unit join and grouping reads them, even with distributed_product_mode = 'local'
    nested = """
        SELECT count() AS n, sum(y) AS sum_y, sum(y * y) AS sum_y2
        FROM (
            SELECT e.unit_id, sum(e.value) AS y
            FROM (SELECT unit_id, value FROM events_two FINAL) AS e
            INNER JOIN (SELECT unit_id, min(timestamp) AS t0 FROM exposures_two GROUP BY unit_id) AS u
                ON e.unit_id = u.unit_id
            GROUP BY e.unit_id
        )
    """
    rows = ch.query(nested, settings={"distributed_product_mode": "local"})

    # Then only the innermost scans ran per shard: units counted once, Σy twice, Σy² four times
    expected_sum, expected_squares = sum(range(10)), sum(i * i for i in range(10))
    assert rows == [{"n": 10, "sum_y": 2 * expected_sum, "sum_y2": 4 * expected_squares}]


def test_rollup__percentile_caps_on_two_shards__the_pooled_percentile_of_every_shards_units(
    clickhouse, settings
):
    # Given winsorized metrics (zeros in, zeros out) over generated data
    import dataclasses

    from tests.analytics.test_rollup_winsor import WINSORIZED, reference_caps

    spec, exposures, events, _ = generate(seed=9, units=90)
    spec = dataclasses.replace(spec, metrics=WINSORIZED)
    write(exposures, events)

    settings.CLICKHOUSE_CLUSTER = ONE_SHARD
    one = rollup_run(spec)
    settings.CLICKHOUSE_CLUSTER = TWO_SHARDS
    two = rollup_run(spec)

    # Then one shard's caps are numpy's percentiles of the pooled units, and two shards (both this
    # server: every unit twice) take the percentile of both shards' values together, not of one shard's
    caps = reference_caps(spec, exposures, events)
    doubled = reference_caps(spec, exposures, events, repeat=2)
    # (a cap taken per shard would be the single server's: the data must tell the two apart)
    assert any(caps[m.measure] != doubled[m.measure] for m in WINSORIZED[:3])
    for metric in WINSORIZED[:3]:
        assert one.caps_used[metric.key] == pytest.approx(caps[metric.measure], rel=1e-12)
        assert two.caps_used[metric.key] == pytest.approx(doubled[metric.measure], rel=1e-12)


def test_rollup_breakdown__two_shards_of_one_server__every_level_twice_the_single_server(
    clickhouse, settings
):
    # Given exposures with a country attribute, a winsorized metric, a quantile metric
    import dataclasses

    from analytics.rollup import Measure, MetricSpec
    from analytics.rollup.dimensions import attribute_exists, attribute_names, rollup_breakdown
    from tests.analytics.test_rollup_dimensions import generate as generate_attributed
    from tests.analytics.test_rollup_dimensions import write_attributed

    spec, rows, events = generate_attributed(seed=4, units=150)
    winsorized = MetricSpec("revenue_p80", "sum", Measure("purchase", "sum", 72, cap_percentile=0.8))
    spec = dataclasses.replace(spec, metrics=(*spec.metrics, winsorized))
    write_attributed(rows)
    write(events=events)

    # When the breakdown runs on one server, on one shard and on two shards that are both this server
    settings.CLICKHOUSE_CLUSTER = ""
    single = rollup_breakdown(spec, "country")
    settings.CLICKHOUSE_CLUSTER = ONE_SHARD
    one = rollup_breakdown(spec, "country")
    assert attribute_names(spec) == ["country", "plan"]
    assert attribute_exists(spec, "plan") and not attribute_exists(spec, "planet")
    settings.CLICKHOUSE_CLUSTER = TWO_SHARDS
    two = rollup_breakdown(spec, "country")
    assert attribute_names(spec) == ["country", "plan"]
    assert attribute_exists(spec, "plan") and not attribute_exists(spec, "planet")

    # Then the same levels in the same order, one shard's sums the single server's and two shards'
    # exactly twice (each shard decided its units' levels; the initiator only added up)
    names = [level for level, _ in single.levels]
    assert (
        len(names) >= 4 and [level for level, _ in one.levels] == [level for level, _ in two.levels] == names
    )
    additive = [m.key for m in spec.metrics if m.type != "quantile" and m.key != "revenue_p80"]
    for breakdown, factor in ((one, 1), (two, 2)):
        for (_, rollup), (_, expected) in zip(breakdown.levels, single.levels, strict=True):
            assert rollup.units == {v: n * factor for v, n in expected.units.items()}
            for key in additive:
                assert_scaled(rollup.totals[key], expected.totals[key], factor)
            for key in ("revenue_p90", "purchase_p50_event"):  # quantiles: every shard's observations
                got, want = dict(rollup.totals[key]), dict(expected.totals[key])
                assert {v: q.n for v, q in got.items()} == {v: q.n * factor for v, q in want.items()}
    # and on two shards the cap is the pooled percentile of both shards' units, the same in every level
    caps = {rollup.caps_used["revenue_p80"] for _, rollup in two.levels}
    assert len(caps) == 1 and None not in caps


def test_rollup_refresh__two_shards_of_one_server__incremental_equals_cold_every_time(clickhouse, settings):
    # Given the incremental suite's randomised traffic (late exposures, variant switches, events
    # after their window, late covariates, replays), sent in batches with a refresh after each
    from tests.analytics.test_rollup_incremental import DAY, HOUR, START, Scenario, refresh, spec_at

    settings.CLICKHOUSE_CLUSTER = TWO_SHARDS
    scenario = Scenario(3)
    now = START + 3 * DAY
    scenario.send(*scenario.new_units(50, since=START, now=now), received_at=now - 30 * SECOND)

    # When each refresh runs on the two shards that are both this server (refresh() asserts that it
    # equals the cold roll-up on the same two shards, every count and sum)
    rollup = refresh(spec_at(now), None, now)
    assert rollup.kind == "full"
    for _ in range(3):
        scenario.send(*scenario.late_traffic(now), received_at=now - 10 * SECOND)
        previous, now = now, now + 6 * HOUR
        scenario.send(*scenario.new_units(6, since=previous, now=now), received_at=now - 40 * SECOND)
        scenario.send(*scenario.late_traffic(now), received_at=now - 30 * SECOND)
        rollup = refresh(spec_at(now), rollup.state, now)
        assert rollup.kind == "incremental"

    # Then the answer is twice the single server's (each shard rolled up every unit of the shared
    # tables), while the state holds each unit once: each shard wrote only the units it owns
    settings.CLICKHOUSE_CLUSTER = ""
    single = rollup_run(spec_at(now))
    assert rollup.units == {v: n * 2 for v, n in single.units.items()} and sum(single.units.values()) > 0
    for key, variants in single.totals.items():
        assert_scaled(rollup.totals[key], variants, 2)
    # (a unit whose t0 moved day has two rows of a version in the values, one under each day)
    for table, sql in (
        ("rollup_units_local", "SELECT count() AS rows, uniqExact(unit_id, version) AS versions, "
         "uniqExact(unit_id) AS units FROM rollup_units_local WHERE units_key = {key:String}"),
        ("rollup_unit_values_local", "SELECT count() AS rows, uniqExact(unit_id, day, version) AS versions, "
         "uniqExact(unit_id) AS units FROM rollup_unit_values_local WHERE units_key = {key:String}"),
    ):  # fmt: skip
        stored = ch.query(sql, {"key": rollup.state.units_key})[0]
        assert stored["rows"] == stored["versions"], table  # no row written twice
        if table == "rollup_units_local":  # every exposed unit (values: the analysed ones only)
            assert stored["units"] == len({e.unit_id for e in scenario.exposures})


def test_rollup_refresh__cluster__every_statement_on_the_replica_it_wrote_to(
    clickhouse, settings, monkeypatch
):
    # Given a spy on what the incremental refresh sends to ClickHouse
    from analytics.rollup import incremental
    from tests.analytics.test_rollup_incremental import DAY, HOUR, START, Scenario, refresh, spec_at

    sent = []
    for name in ("query", "command"):
        original = getattr(incremental.clickhouse, name)

        def spy(sql, params=None, *, _original=original, **kwargs):
            sent.append((sql, kwargs.get("settings") or {}))
            return _original(sql, params, **kwargs)

        monkeypatch.setattr(incremental.clickhouse, name, spy)
    settings.CLICKHOUSE_CLUSTER = TWO_SHARDS
    scenario = Scenario(8)
    now = START + 2 * DAY
    scenario.send(*scenario.new_units(20, since=START, now=now), received_at=now - 30 * SECOND)

    # When a full refresh, then an incremental one, run on the cluster
    state = refresh(spec_at(now), None, now).state
    scenario.send(*scenario.late_traffic(now + HOUR), received_at=now + HOUR - 30 * SECOND)
    assert refresh(spec_at(now + HOUR), state, now + HOUR).kind == "incremental"

    # Then every statement asks for each shard's first healthy replica (reads see the refresh's own
    # writes without a quorum), and every write waits for its shard and goes through the initiator
    state_statements = [(sql, options) for sql, options in sent if "rollup_" in sql]
    assert len(state_statements) > 15
    assert all(options.get("load_balancing") == "in_order" for _, options in state_statements)
    inserts = [options for sql, options in state_statements if sql.startswith("INSERT")]
    assert inserts and all(
        o["distributed_foreground_insert"] == 1 and o["parallel_distributed_insert_select"] == 0
        for o in inserts
    )
