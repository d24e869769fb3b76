"""Versioned ClickHouse schema: numbered SQL files applied once, in order, recorded in ClickHouse.

``migrations_sql/NNNN_name.sql`` holds one or more statements, each ending with ``;`` at the end of a
line. ``{database}`` in a file stands for the configured database (validated as a plain identifier,
because identifiers cannot be bound parameters); nothing else is substituted. Every statement is
written to be safe to run again (``IF NOT EXISTS``), and applied versions are recorded in
``<database>.schema_migrations``, so ``migrate()`` is idempotent and a half-applied file can simply be
run again.

With ``CLICKHOUSE_CLUSTER`` set, every statement (the bootstrap's too) goes through
:class:`analytics.clickhouse.cluster.ClusterLayout` on its way to ClickHouse: shard-local replicated
tables ``ON CLUSTER`` and ``Distributed`` tables under the files' names. The files and their checksums
do not change.
"""

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from analytics.clickhouse import client
from analytics.clickhouse.cluster import ClusterLayout
from analytics.clickhouse.errors import ClickHouseError
from analytics.clickhouse.params import IDENTIFIER_RE

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations_sql"
_FILENAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END_RE = re.compile(r";[ \t]*$", re.MULTILINE)

_BOOTSTRAP = (
    "CREATE DATABASE IF NOT EXISTS {database}",
    # Plain MergeTree: a version applied twice by racing runners shows up twice and is read with
    # GROUP BY; there are a handful of rows, so nothing here needs to be fast.
    """CREATE TABLE IF NOT EXISTS {database}.schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version""",
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str, layout: ClusterLayout | None = None) -> list[str]:
        """The statements to run: the file's, or their cluster form through ``layout``."""
        statements = split_statements(render(self.sql, database))
        if layout is None:
            return statements
        return [rewritten for statement in statements for rewritten in layout.statements(statement)]


@dataclass(frozen=True)
class MigrationState:
    migration: Migration
    applied_at: dt.datetime | None
    changed: bool  # the file differs from the one that was applied

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def render(sql: str, database: str) -> str:
    """``sql`` with ``{database}`` replaced by the validated database name."""
    if not IDENTIFIER_RE.match(database):
        raise ClickHouseError(f"The ClickHouse database name {database!r} is not a plain identifier.")
    return sql.replace("{database}", database)


def split_statements(sql: str) -> list[str]:
    """Statements separated by a ``;`` at the end of a line; comment-only chunks dropped."""
    statements = []
    for chunk in _STATEMENT_END_RE.split(sql):
        code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
        if code.strip():
            statements.append(chunk.strip())
    return statements


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, by version; two files with one version are refused."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILENAME_RE.match(path.name)
        if not match:
            raise ClickHouseError(f"ClickHouse migration {path.name} is not named NNNN_name.sql.")
        version = int(match.group(1))
        if version in migrations:
            raise ClickHouseError(f"Two ClickHouse migrations have version {version:04d}.")
        migrations[version] = Migration(version=version, name=match.group(2), path=path)
    return [migrations[version] for version in sorted(migrations)]


def cluster_layout(database: str) -> ClusterLayout | None:
    """The layout of the configured cluster (``CLICKHOUSE_CLUSTER``); None on a single server."""
    if not settings.CLICKHOUSE_CLUSTER:
        return None
    return ClusterLayout(
        cluster=settings.CLICKHOUSE_CLUSTER,
        database=database,
        replicated=settings.CLICKHOUSE_CLUSTER_REPLICATED,
    )


def bootstrap_statements(database: str, layout: ClusterLayout | None = None) -> list[str]:
    """The database and the migration log, for one server or (through ``layout``) a cluster."""
    statements = [render(statement, database) for statement in _BOOTSTRAP]
    if layout is None:
        return statements
    return [rewritten for statement in statements for rewritten in layout.statements(statement)]


def cluster_shape(cluster: str) -> tuple[int, int]:
    """(shards, replicas) of ``cluster`` as the connected server knows it; (0, 0) when it does not."""
    rows = client.query(
        "SELECT uniqExact(shard_num) AS shards, count() AS replicas FROM system.clusters "
        "WHERE cluster = {cluster:String}",
        {"cluster": cluster},
        use_database=False,
    )
    return (int(rows[0]["shards"]), int(rows[0]["replicas"])) if rows else (0, 0)


def _check_cluster(layout: ClusterLayout) -> None:
    if cluster_shape(layout.cluster)[0] == 0:
        known = client.query(
            "SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster", use_database=False
        )
        names = ", ".join(row["cluster"] for row in known) or "none"
        raise ClickHouseError(
            f"CLICKHOUSE_CLUSTER={layout.cluster}: the ClickHouse server has no such cluster in its "
            f"remote_servers (it has: {names})."
        )


def _bootstrap(database: str) -> None:
    layout = cluster_layout(database)
    if layout is not None:
        _check_cluster(layout)
    for statement in bootstrap_statements(database, layout):
        client.command(statement, use_database=False)


def _applied(database: str) -> dict[int, tuple[dt.datetime, str]]:
    """Applied versions, with when they were first applied and the checksum of the file then."""
    rows = client.query(
        """
        SELECT version, min(applied_at) AS first_applied_at, argMin(checksum, applied_at) AS first_checksum
        FROM {db:Identifier}.schema_migrations
        GROUP BY version
        """,
        {"db": database},
        use_database=False,
    )
    return {row["version"]: (row["first_applied_at"], row["first_checksum"]) for row in rows}


def status(directory: Path = MIGRATIONS_DIR) -> list[MigrationState]:
    """Every migration file with whether (and when) it was applied."""
    database = client.database_name()
    _bootstrap(database)
    applied = _applied(database)
    states = []
    for migration in discover(directory):
        applied_at, checksum = applied.get(migration.version, (None, None))
        states.append(
            MigrationState(
                migration=migration,
                applied_at=applied_at,
                changed=applied_at is not None and checksum != migration.checksum,
            )
        )
    return states


def migrate(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply the pending migrations in order; the ones applied now (none the second time)."""
    database = client.database_name()
    layout = cluster_layout(database)
    done = []
    for state in status(directory):
        migration = state.migration
        # Applied ones too: the layout learns from every file which tables are sharded.
        statements = migration.statements(database, layout)
        if state.applied:
            continue
        for statement in statements:
            client.command(statement, use_database=False)
        client.insert(
            f"{database}.schema_migrations",
            [(migration.version, migration.name, migration.checksum, dt.datetime.now(dt.UTC))],
            ["version", "name", "checksum", "applied_at"],
        )
        done.append(migration)
    if done:
        client.forget_column_types()
    return done
