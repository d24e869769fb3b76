"""Versioned ClickHouse migrations and ``manage.py clickhouse_migrate``, on both backends."""

import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from analytics import clickhouse as ch
from analytics.clickhouse import migrations


@pytest.fixture
def fresh_database(clickhouse, settings, request):
    """An empty, not yet created database, on the parametrised backend; dropped afterwards."""
    name = f"experiments_{uuid.uuid4().hex[:12]}"
    settings.CLICKHOUSE_DATABASE = name
    if clickhouse.backend == "http":
        settings.CLICKHOUSE_URL = request.getfixturevalue("clickhouse_http_server").url(name)
    yield name
    ch.command("DROP DATABASE IF EXISTS {name:Identifier}", {"name": name}, use_database=False)


def _tables(database: str) -> list[tuple[str, str]]:
    rows = ch.query(
        "SELECT name, engine FROM system.tables WHERE database = {database:String} ORDER BY name",
        {"database": database},
        use_database=False,
    )
    return [(row["name"], row["engine"]) for row in rows]


def test_migrate__new_database__creates_every_table_and_records_the_versions(fresh_database):
    applied = migrations.migrate()

    assert [m.version for m in applied] == [m.version for m in migrations.discover()]
    assert _tables(fresh_database) == [
        ("events", "ReplacingMergeTree"),
        ("events_dedup", "View"),
        ("exposures", "ReplacingMergeTree"),
        ("exposures_dedup", "View"),
        ("rollup_arrivals", "MergeTree"),
        ("rollup_scratch_unit_values", "MergeTree"),
        ("rollup_scratch_units", "MergeTree"),
        ("rollup_touched", "ReplacingMergeTree"),
        ("rollup_unit_values", "ReplacingMergeTree"),
        ("rollup_units", "ReplacingMergeTree"),
        ("schema_migrations", "MergeTree"),
    ]
    assert all(state.applied and not state.changed for state in migrations.status())


def test_migrate__run_twice__second_run_is_a_no_op(fresh_database):
    migrations.migrate()
    tables = _tables(fresh_database)

    second = migrations.migrate()

    assert second == []
    assert _tables(fresh_database) == tables
    recorded = ch.query("SELECT count() AS n FROM schema_migrations")
    assert recorded == [{"n": len(migrations.discover())}]


def test_migrate__events_table__is_keyed_for_dedup_and_metric_reads(clickhouse):
    rows = ch.query(
        "SELECT name, sorting_key, partition_key FROM system.tables "
        "WHERE database = {database:String} AND name IN ('events', 'exposures') ORDER BY name",
        {"database": clickhouse.database},
        use_database=False,
    )

    assert rows == [
        {"name": "events", "sorting_key": "name, unit_id, event_id", "partition_key": "toYYYYMM(timestamp)"},
        {
            "name": "exposures",
            "sorting_key": "experiment, unit_id, timestamp, variant, environment",
            "partition_key": "toYYYYMM(timestamp)",
        },
    ]


def test_migrate__received_at__skip_indexed_for_the_incremental_refresh(clickhouse):
    rows = ch.query(
        "SELECT table, expr, type FROM system.data_skipping_indices "
        "WHERE database = {database:String} ORDER BY table",
        {"database": clickhouse.database},
        use_database=False,
    )

    assert rows == [
        {"table": "events", "expr": "received_at", "type": "minmax"},
        {"table": "exposures", "expr": "received_at", "type": "minmax"},
    ]


def test_clickhouse_migrate_command__list__shows_pending_then_applied(fresh_database):
    before, run, again, after = StringIO(), StringIO(), StringIO(), StringIO()

    call_command("clickhouse_migrate", "--list", stdout=before)
    call_command("clickhouse_migrate", stdout=run)
    call_command("clickhouse_migrate", stdout=again)
    call_command("clickhouse_migrate", "--list", stdout=after)

    assert " [ ] 0001_events (pending)" in before.getvalue()
    assert "[X]" not in before.getvalue()
    assert "Applied 0001_events" in run.getvalue()
    assert "Applied 0003_dedup_views" in run.getvalue()
    assert "nothing to apply" in again.getvalue()
    assert " [X] 0001_events (applied " in after.getvalue()
    assert " [X] 0002_exposures (applied " in after.getvalue()
    assert "pending" not in after.getvalue()


def test_split_statements__semicolons_at_line_ends__one_statement_each():
    sql = (
        "-- a comment; not a split\nCREATE TABLE a (x String DEFAULT ';');\n\n"
        "CREATE VIEW b AS SELECT 1;\n-- end\n"
    )

    statements = migrations.split_statements(sql)

    assert statements == [
        "-- a comment; not a split\nCREATE TABLE a (x String DEFAULT ';')",
        "CREATE VIEW b AS SELECT 1",
    ]


@pytest.mark.parametrize("database", ["experiments; DROP DATABASE x", "1abc", "a-b", "", "a.b"])
def test_render__database_not_an_identifier__is_refused(database):
    with pytest.raises(ch.ClickHouseError, match="not a plain identifier"):
        migrations.render("CREATE DATABASE {database}", database)


def test_discover__shipped_files__are_numbered_without_gaps():
    versions = [m.version for m in migrations.discover()]

    assert versions == list(range(1, len(versions) + 1))
