"""ClickHouse clusters (``CLICKHOUSE_CLUSTER``): the migrations' cluster form, the insert settings, the
compose file for users, and the cluster suite.

Replication and ``ON CLUSTER`` need ClickHouse Keeper, which cannot run here, so the replicated DDL is
checked by ClickHouse's own parser (``formatQuery`` refuses what it cannot parse). The ``Distributed``
tables and the per-shard roll-up run for real inside chDB in the cluster suite
(``test_cluster_suite__...`` below, which starts pytest with a chDB cluster configuration).
"""

import datetime as dt
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from analytics import clickhouse as ch
from analytics.clickhouse import ClickHouseError, migrations
from analytics.clickhouse.client import cluster_insert_settings
from analytics.clickhouse.cluster import ClusterLayout
from analytics.ingestion import services as ingestion
from tests.support.clickhouse_cluster import cluster_suite_env, write_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "clickhouse-cluster"


def _layout(*, replicated: bool = True) -> ClusterLayout:
    return ClusterLayout(cluster="platform", database="experiments", replicated=replicated)


def _cluster_statements(layout: ClusterLayout, directory: Path = migrations.MIGRATIONS_DIR) -> list[str]:
    statements = migrations.bootstrap_statements("experiments", layout)
    for migration in migrations.discover(directory):
        statements += migration.statements("experiments", layout)
    return statements


def _format(sql: str) -> str:
    """ClickHouse's own rendering of ``sql``; raises ClickHouseError when it does not parse."""
    return ch.query("SELECT formatQuerySingleLine({sql:String}) AS sql", {"sql": sql}, use_database=False)[0][
        "sql"
    ]


# --- the migrations' cluster form ------------------------------------------------------------------------
def test_cluster_layout__replicated__every_statement_parses_as_clickhouse_ddl(clickhouse_schema):
    statements = _cluster_statements(_layout())

    formatted = [_format(statement) for statement in statements]

    assert len(formatted) == len(statements) >= 10
    assert all(" ON CLUSTER platform" in sql for sql in formatted)


def test_format_query__a_broken_statement__refused(clickhouse_schema):
    # The check above can fail: ClickHouse's parser refuses what is not DDL it understands
    with pytest.raises(ClickHouseError):
        _format(
            "CREATE TABLE x.y ON CLUSTER c (a UInt8 ENGINE = ReplicatedMergeTree('/p', '{replica}') ORDER BY a"
        )


def test_cluster_layout__replicated__unit_tables_sharded_replicated_and_distributed(clickhouse_schema):
    formatted, alters, drops = {}, [], []
    for statement in _cluster_statements(_layout()):
        sql = _format(statement)
        if sql.startswith("ALTER TABLE"):
            alters.append(sql)
            continue
        if sql.startswith("DROP TABLE"):  # 0007 replaces the roll-up's value tables
            drops.append(sql)
            continue
        name = re.match(r"CREATE (?:TABLE|VIEW|DATABASE) IF NOT EXISTS (\S+)", sql)[1]
        formatted[name] = sql

    # an index (not a column) of a sharded table is the local table's, on every node
    index_alters = [sql for sql in alters if " INDEX " in sql]
    assert index_alters and all(
        re.match(r"ALTER TABLE experiments\.\w+_local ON CLUSTER platform ", sql) for sql in index_alters
    ), index_alters

    for table in ("events", "exposures"):
        local = formatted[f"experiments.{table}_local"]
        assert (
            f"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/experiments/{table}_local', "
            "'{replica}')" in local
        )
        assert "PARTITION BY toYYYYMM(timestamp)" in local and "ORDER BY" in local
        assert formatted[f"experiments.{table}"].endswith(
            f"AS experiments.{table}_local ENGINE = Distributed(platform, experiments, {table}_local, "
            "cityHash64(unit_id))"
        )
        assert f"FROM experiments.{table} FINAL" in formatted[f"experiments.{table}_dedup"]
        assert f"FROM experiments.{table}_local FINAL" in formatted[f"experiments.{table}_dedup_local"]
    # a dropped sharded table goes on every node, its Distributed table and its local one
    assert "DROP TABLE IF EXISTS experiments.rollup_values ON CLUSTER platform" in drops
    assert "DROP TABLE IF EXISTS experiments.rollup_values_local ON CLUSTER platform" in drops
    assert "experiments.rollup_unit_values_local" in formatted  # a new name, so a new replication path
    # schema_migrations has no unit_id: one full copy on every node, one replication path for all
    assert (
        "ReplicatedMergeTree('/clickhouse/tables/all/experiments/schema_migrations', '{shard}-{replica}')"
        in formatted["experiments.schema_migrations"]
    )


def test_cluster_layout__a_new_migration_file__same_treatment_without_code(tmp_path, clickhouse_schema):
    # Given migrations as another feature would add them: a per-unit state table, a per-experiment
    # table, a view over the state, a column added later
    for path in migrations.discover():
        (tmp_path / path.path.name).write_text(path.sql)
    (tmp_path / "9999_unit_state.sql").write_text(
        "-- per-unit state\n"
        "CREATE TABLE IF NOT EXISTS {database}.unit_state\n(\n    experiment String,\n    unit_id String,\n"
        "    value Float64,\n    version UInt64\n)\nENGINE = ReplacingMergeTree(version)\n"
        "ORDER BY (experiment, unit_id)\nSETTINGS index_granularity = 1024;\n\n"
        "CREATE TABLE IF NOT EXISTS {database}.watermarks\n(\n    experiment String,\n"
        "    watermark DateTime64(3, 'UTC')\n)\nENGINE = ReplacingMergeTree\nORDER BY experiment;\n\n"
        "CREATE VIEW IF NOT EXISTS {database}.unit_state_final AS SELECT * FROM {database}.unit_state FINAL;\n\n"
        "ALTER TABLE {database}.unit_state ADD COLUMN IF NOT EXISTS covariate Float64;\n"
    )

    # When the layout rewrites them
    existing = len(_cluster_statements(_layout()))
    statements = _cluster_statements(_layout(), tmp_path)[existing:]
    formatted = [_format(statement) for statement in statements]

    # Then the unit table is sharded like events, its engine's arguments kept after path and replica
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/experiments/unit_state_local', "
        in formatted[0]
    )
    assert "'{replica}', version)" in formatted[0] and "index_granularity = 1024" in formatted[0]
    assert "Distributed(platform, experiments, unit_state_local, cityHash64(unit_id))" in formatted[1]
    # the per-experiment table is copied to every node
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/all/experiments/watermarks'" in formatted[2]
    # the view and its shard-local twin, and the column added to both tables of the unit state
    assert "FROM experiments.unit_state FINAL" in formatted[3]
    assert formatted[4].startswith("CREATE VIEW IF NOT EXISTS experiments.unit_state_final_local")
    assert "FROM experiments.unit_state_local FINAL" in formatted[4]
    assert formatted[5].startswith("ALTER TABLE experiments.unit_state_local ON CLUSTER platform (ADD COLUMN")
    assert formatted[6].startswith("ALTER TABLE experiments.unit_state ON CLUSTER platform (ADD COLUMN")
    assert len(formatted) == 7


def test_cluster_layout__not_replicated__file_engines_and_no_on_cluster():
    statements = _cluster_statements(_layout(replicated=False))

    assert not any("ON CLUSTER" in sql or "Replicated" in sql for sql in statements)
    assert any(sql.startswith("CREATE TABLE IF NOT EXISTS experiments.events_local") for sql in statements)
    assert "ENGINE = ReplacingMergeTree\nPARTITION BY" in "\n".join(statements)


@pytest.mark.parametrize("replicated", [True, False])
def test_incremental_state_cleanup__cluster__every_shards_own_table(clickhouse_schema, replicated):
    # The incremental roll-up's only statements that are not INSERT ... SELECT (which go through the
    # Distributed tables, run for real in the cluster suite): dropping old generations' rows
    from analytics.rollup import RollupSpec
    from analytics.rollup.query import Shards
    from analytics.rollup.state import StateQuery

    shards = Shards(cluster="platform", database="experiments", slots=(1, 2), replicated=replicated)
    spec = RollupSpec(experiment="exp", variants=("a", "b"), until=dt.datetime(2024, 5, 1, tzinfo=dt.UTC))

    statements = StateQuery(spec, units_key="k", version=2, shards=shards).delete_statements()

    formatted = [_format(statement.sql) for statement in statements]
    on_cluster = " ON CLUSTER platform" if replicated else ""
    assert [sql.split(" WHERE ")[0] for sql in formatted] == [
        f"DELETE FROM experiments.rollup_units_local{on_cluster}",
        f"DELETE FROM experiments.rollup_unit_values_local{on_cluster}",
    ]


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS experiments.mv TO experiments.x AS SELECT 1",
            "no cluster form",
        ),
        ("CREATE TABLE IF NOT EXISTS experiments.t (unit_id String) ENGINE = Memory", "only *MergeTree"),
    ],
)
def test_cluster_layout__statement_without_a_cluster_form__refused_naming_it(statement, reason):
    with pytest.raises(ClickHouseError, match=re.escape(reason)):
        _layout().statements(statement)


# --- inserts ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cluster", "quorum", "expected"),
    [
        ("", "0", {}),
        ("platform", "0", {"distributed_foreground_insert": 1}),
        ("platform", "2", {"distributed_foreground_insert": 1, "insert_quorum": 2}),
        ("platform", "auto", {"distributed_foreground_insert": 1, "insert_quorum": "auto"}),
    ],
)
def test_cluster_insert_settings__cluster_and_quorum__sent_with_every_insert(cluster, quorum, expected):
    assert cluster_insert_settings(cluster, quorum) == expected


def _settings_process(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CLICKHOUSE_"))}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        capture_output=True,
        text=True,
        env={**environment, "DJANGO_SETTINGS_MODULE": "config.settings"},
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.slow  # starts Python processes of its own
@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CLICKHOUSE_CLUSTER": "my-cluster"}, "CLICKHOUSE_CLUSTER"),
        ({"CLICKHOUSE_CLUSTER": "c", "CLICKHOUSE_INSERT_QUORUM": "two"}, "CLICKHOUSE_INSERT_QUORUM"),
        ({"CLICKHOUSE_INSERT_QUORUM": "2"}, "CLICKHOUSE_INSERT_QUORUM needs replicated tables"),
        (
            {
                "CLICKHOUSE_CLUSTER": "c",
                "CLICKHOUSE_CLUSTER_REPLICATED": "false",
                "CLICKHOUSE_INSERT_QUORUM": "2",
            },
            "CLICKHOUSE_INSERT_QUORUM needs replicated tables",
        ),
    ],
)
def test_settings__impossible_cluster_settings__improperly_configured(env, named):
    result = _settings_process(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr


# --- the compose file for users ---------------------------------------------------------------------------
def _xml(name: str) -> ET.Element:
    return ET.parse(DEPLOY / name).getroot()


def test_cluster_compose__two_shards_of_two_replicas_and_three_keepers__consistent():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    nodes = {name: s for name, s in services.items() if "clickhouse-server" in s["image"]}
    keepers = {name: s for name, s in services.items() if "clickhouse-keeper" in s["image"]}

    # The cluster the platform is told to use is the one the servers define
    cluster_name = compose["x-platform-settings"]["CLICKHOUSE_CLUSTER"]
    cluster = _xml("cluster.xml").find(f"remote_servers/{cluster_name}")
    assert cluster is not None
    shards = cluster.findall("shard")
    assert len(shards) == 2 and all(len(shard.findall("replica")) == 2 for shard in shards)
    assert all(shard.findtext("internal_replication") == "true" for shard in shards)

    # Each node's macros (from its environment) place it in the shard that lists it, once
    macros = _xml("macros.xml").find("macros")
    assert macros.find("shard").get("from_env") == "CLICKHOUSE_SHARD"
    assert macros.find("replica").get("from_env") == "CLICKHOUSE_REPLICA"
    listed = {}
    for index, shard in enumerate(shards, start=1):
        for replica in shard.findall("replica"):
            listed[replica.findtext("host")] = index
    assert set(listed) == set(nodes)
    for name, node in nodes.items():
        assert node["hostname"] == name
        assert int(node["environment"]["CLICKHOUSE_SHARD"]) == listed[name]
        volumes = " ".join(node["volumes"])
        assert "./cluster.xml:" in volumes and "./macros.xml:" in volumes
    assert len({node["environment"]["CLICKHOUSE_REPLICA"] for node in nodes.values()}) == 4  # unique

    # Three keepers, each with its own id, the Raft members, and the servers' Keeper list
    assert len(keepers) == 3
    raft = {
        server.findtext("hostname"): int(server.findtext("id"))
        for server in _xml("keeper.xml").findall("keeper_server/raft_configuration/server")
    }
    assert raft == {name: int(keeper["environment"]["KEEPER_SERVER_ID"]) for name, keeper in keepers.items()}
    keeper_port = _xml("keeper.xml").findtext("keeper_server/tcp_port")
    zookeeper = _xml("cluster.xml").findall("zookeeper/node")
    assert {(n.findtext("host"), n.findtext("port")) for n in zookeeper} == {
        (k, keeper_port) for k in keepers
    }

    # The quorum the platform asks for is one the shards can give
    assert int(compose["x-platform-settings"]["CLICKHOUSE_INSERT_QUORUM"]) <= 2
    assert "localhost:8123/" in compose["x-platform-settings"]["CLICKHOUSE_URL"]


# --- the cluster suite -----------------------------------------------------------------------------------
CLUSTER_SUITE = [
    "tests/analytics/test_cluster_shards.py",
    "tests/analytics/test_rollup.py",
    "tests/analytics/test_rollup_incremental.py",
    "tests/analytics/test_results_incremental.py",
    "tests/analytics/test_rollup_quantile.py",
    "tests/analytics/test_rollup_dimensions.py",
    "tests/analytics/test_results.py",
    "tests/analytics/test_end_to_end.py",
    "tests/analytics/test_ingestion.py",
]
# Left out of the cluster suite, with why:
CLUSTER_SUITE_DESELECTED = [
    # chDB's streamed insert into a Distributed table reports the rows it routed, not the shard's
    # refusal, so this test of chDB's silent drop on a single table has nothing to see on a cluster
    "tests/analytics/test_ingestion.py::test_events_write__embedded_engine_drops_an_insert_silently__spooled_then_drained[chdb]",
    # about who owns the data directory (its own processes, no cluster), and a minute long
    "tests/analytics/test_results.py::test_rollup_command_process__embedded_data_owned_by_another_process__one_line_exit_1_nothing_recorded",
]


@pytest.mark.slow  # a pytest process of its own, about two minutes on two cores
def test_cluster_suite__analytics_tests_through_distributed_tables__pass(tmp_path):
    # Given a process whose embedded ClickHouse has the one_shard and two_shards clusters, and whose
    # migrations create Distributed tables over one_shard (chDB opens one data directory per process)
    config = write_config(tmp_path)
    command = [sys.executable, "-m", "pytest", *CLUSTER_SUITE, "-q", "-rs", "-p", "no:cacheprovider"]
    # The embedded backend only, except for the cluster's own tests: the HTTP backend runs the same
    # SQL against the same engine, so running both would only double the time
    command += ["-m", "not browser", "-k", "not http or test_cluster_shards"]
    for test in CLUSTER_SUITE_DESELECTED:
        command += ["--deselect", test]

    # When the analytics suites run there
    result = subprocess.run(command, cwd=ROOT, env=cluster_suite_env(config), capture_output=True, text=True)

    # Then they pass, the cluster's own tests included (not skipped)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
    assert "test_cluster_shards.py" not in result.stdout  # -rs would list it had it been skipped


# --- a cluster the server does not know -------------------------------------------------------------------
def test_migrate__cluster_unknown_to_the_server__refused_naming_it(clickhouse, settings):
    settings.CLICKHOUSE_CLUSTER, settings.CLICKHOUSE_CLUSTER_REPLICATED = "nowhere", False
    settings.CLICKHOUSE_DATABASE = "experiments_nowhere"

    with pytest.raises(ClickHouseError, match="CLICKHOUSE_CLUSTER=nowhere: .* no such cluster"):
        migrations.migrate()

    databases = ch.query(
        "SELECT name FROM system.databases WHERE name = 'experiments_nowhere'", use_database=False
    )
    assert databases == []


def test_clickhouse_check__cluster_unknown_to_the_server__warns(clickhouse, settings):
    settings.CLICKHOUSE_CLUSTER = "nowhere"
    out = StringIO()

    call_command("clickhouse_check", stdout=out)

    assert "Cluster nowhere (CLICKHOUSE_CLUSTER) is not in this server's remote_servers." in out.getvalue()


def test_client__cluster_with_quorum__every_insert_of_either_backend_carries_them(clickhouse, settings):
    settings.CLICKHOUSE_CLUSTER, settings.CLICKHOUSE_INSERT_QUORUM = "platform", "2"

    backend = ch.get_backend()

    assert backend.insert_settings == {
        "max_partitions_per_insert_block": 0,
        "distributed_foreground_insert": 1,
        "insert_quorum": 2,
    }
    # and ClickHouse takes them (the quorum means nothing on this server's unreplicated tables)
    ingestion.events_write(rows=[{"name": "e", "unit_id": "u"}])
    assert clickhouse.count("events") == 1
