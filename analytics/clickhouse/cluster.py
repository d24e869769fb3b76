"""The schema on a ClickHouse cluster: the migrations' statements rewritten for shards and replicas.

The numbered files in ``migrations_sql/`` are written for one server. With ``CLICKHOUSE_CLUSTER`` set,
:class:`ClusterLayout` rewrites each statement, by its form and never by table name, so a new
migration file gets the same treatment without code here:

- ``CREATE TABLE {database}.t (... unit_id ...) ENGINE = XMergeTree ...`` (a table with a ``unit_id``
  column: per-unit data) becomes two tables. ``t_local`` holds a shard's rows:
  ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/<database>/t_local', '{replica}')`` with the
  file's columns, keys and settings. ``t``, the name every reader and writer uses, is
  ``Distributed(<cluster>, <database>, t_local, cityHash64(unit_id))``: a unit's rows of every such
  table land on one shard, so whatever joins per unit (the roll-up: events to exposures) runs on each
  shard alone, and a replayed row meets its twin there (``FINAL`` works per shard).
- A table without ``unit_id`` (``schema_migrations``, any per-experiment table) is one copy on every
  node: ``ReplicatedXMergeTree('/clickhouse/tables/all/<database>/t', '{shard}-{replica}')`` (one
  replication path for the whole cluster, hence a replica name unique across shards).
- ``CREATE VIEW v AS ... FROM {database}.t ...`` over a sharded table is created as written (over the
  Distributed table) and again as ``v_local`` over ``t_local``, the shard's own part of it, for
  queries that run on every shard (the roll-up's ``cluster(..., view(...))``).
- ``CREATE DATABASE``, ``ALTER TABLE`` and ``DROP`` run ``ON CLUSTER``; an ``ALTER`` of a sharded
  table's columns applies to both of its tables.

Every statement is created ``ON CLUSTER <cluster>`` with replicated engines, which needs ClickHouse
Keeper. ``replicated=False`` (``CLICKHOUSE_CLUSTER_REPLICATED=false``) keeps the file's engine and
runs on the connected server only: the ``Distributed`` tables then work over a cluster whose shards
are that one server, which is how the test suite exercises them inside chDB, where Keeper cannot run.

Identifiers only (cluster, database and table names, all validated plain identifiers) are placed in
the SQL; migrations hold no values.
"""

import re
from dataclasses import dataclass, field

from analytics.clickhouse.errors import ClickHouseError
from analytics.clickhouse.params import IDENTIFIER_RE

SHARDING_COLUMN = "unit_id"
SHARDING_KEY = f"cityHash64({SHARDING_COLUMN})"
LOCAL_SUFFIX = "_local"

_NAME = r"(?P<database>\w+)\.(?P<table>\w+)"
_CREATE_DATABASE_RE = re.compile(r"^CREATE\s+DATABASE\s+IF\s+NOT\s+EXISTS\s+(?P<database>\w+)$", re.I)
_CREATE_TABLE_RE = re.compile(
    rf"^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+{_NAME}\s*\((?P<columns>.*)\)\s*"
    r"ENGINE\s*=\s*(?P<engine>\w+)(?:\s*\((?P<args>[^()]*)\))?(?P<rest>.*)$",
    re.I | re.S,
)
_CREATE_VIEW_RE = re.compile(
    rf"^CREATE\s+VIEW\s+IF\s+NOT\s+EXISTS\s+{_NAME}\s+AS\s+(?P<query>.*)$", re.I | re.S
)
_ALTER_RE = re.compile(rf"^ALTER\s+TABLE\s+{_NAME}\s+(?P<rest>.*)$", re.I | re.S)
_COLUMN_ALTER_RE = re.compile(r"^(ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.I)
_DROP_RE = re.compile(rf"^DROP\s+(?P<kind>TABLE|VIEW)\s+IF\s+EXISTS\s+{_NAME}$", re.I)
_SHARDING_COLUMN_RE = re.compile(rf"^\s*{SHARDING_COLUMN}\s", re.M)


def _code(statement: str) -> str:
    """The statement without its ``--`` comment lines, stripped."""
    lines = [line for line in statement.splitlines() if not line.strip().startswith("--")]
    return "\n".join(lines).strip()


@dataclass
class ClusterLayout:
    """Rewrites migration statements for ``cluster`` (see the module docstring).

    Stateful: it remembers the sharded tables and the views with a shard-local twin it has seen, so
    the statements of every migration, applied or not, go through one layout in order.
    """

    cluster: str
    database: str
    replicated: bool = True
    sharded: set[str] = field(default_factory=set)  # tables split into t_local + Distributed t
    local_views: set[str] = field(default_factory=set)  # views with a v_local twin

    def __post_init__(self) -> None:
        for name in (self.cluster, self.database):
            if not IDENTIFIER_RE.match(name):
                raise ClickHouseError(f"{name!r} is not a plain identifier (a cluster or database name).")

    # --- pieces ---------------------------------------------------------------------------------------
    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.replicated else ""

    def local(self, table: str) -> str:
        """The shard-local twin of a sharded table or view."""
        return f"{table}{LOCAL_SUFFIX}"

    def _engine(self, engine: str, args: str | None, *, path: str, replica: str) -> str:
        if not engine.endswith("MergeTree"):
            raise ClickHouseError(
                f"Cannot put a {engine} table on a ClickHouse cluster: only *MergeTree engines replicate."
            )
        if not self.replicated:
            return engine if args is None else f"{engine}({args})"
        replicated = engine if engine.startswith("Replicated") else f"Replicated{engine}"
        arguments = [f"'{path}'", f"'{replica}'"] + ([args.strip()] if args and args.strip() else [])
        return f"{replicated}({', '.join(arguments)})"

    # --- statements -------------------------------------------------------------------------------------
    def statements(self, statement: str) -> list[str]:
        """The statements that do on the cluster what ``statement`` does on one server."""
        code = _code(statement)
        if match := _CREATE_DATABASE_RE.match(code):
            return [f"CREATE DATABASE IF NOT EXISTS {match['database']}{self.on_cluster}"]
        if match := _CREATE_TABLE_RE.match(code):
            return self._create_table(match)
        if match := _CREATE_VIEW_RE.match(code):
            return self._create_view(match)
        if match := _ALTER_RE.match(code):
            return self._alter(match)
        if match := _DROP_RE.match(code):
            return self._drop(match)
        first_line = code.splitlines()[0] if code else ""
        raise ClickHouseError(
            f"This migration statement has no cluster form (analytics/clickhouse/cluster.py): {first_line}"
        )

    def _create_table(self, match: re.Match[str]) -> list[str]:
        database, table = match["database"], match["table"]
        columns, engine, args, rest = match["columns"], match["engine"], match["args"], match["rest"]
        rest = rest.strip()
        if not _SHARDING_COLUMN_RE.search(columns):  # one full copy on every node
            engine_sql = self._engine(
                engine, args, path=f"/clickhouse/tables/all/{database}/{table}", replica="{shard}-{replica}"
            )
            return [
                f"CREATE TABLE IF NOT EXISTS {database}.{table}{self.on_cluster}\n({columns})\n"
                f"ENGINE = {engine_sql}\n{rest}".strip()
            ]
        local = self.local(table)
        engine_sql = self._engine(
            engine, args, path=f"/clickhouse/tables/{{shard}}/{database}/{local}", replica="{replica}"
        )
        self.sharded.add(table)
        return [
            f"CREATE TABLE IF NOT EXISTS {database}.{local}{self.on_cluster}\n({columns})\n"
            f"ENGINE = {engine_sql}\n{rest}".strip(),
            f"CREATE TABLE IF NOT EXISTS {database}.{table}{self.on_cluster} AS {database}.{local}\n"
            f"ENGINE = Distributed({self.cluster}, {database}, {local}, {SHARDING_KEY})",
        ]

    def _reads_sharded(self, query: str) -> bool:
        return any(self._table_re(table).search(query) for table in self.sharded)

    def _table_re(self, table: str) -> re.Pattern[str]:
        return re.compile(rf"\b{self.database}\.{table}\b")

    def _create_view(self, match: re.Match[str]) -> list[str]:
        database, view, query = match["database"], match["table"], match["query"]
        statements = [f"CREATE VIEW IF NOT EXISTS {database}.{view}{self.on_cluster} AS {query}"]
        if self._reads_sharded(query):
            local_query = query
            for table in self.sharded:
                local_query = self._table_re(table).sub(f"{self.database}.{self.local(table)}", local_query)
            statements.append(
                f"CREATE VIEW IF NOT EXISTS {database}.{self.local(view)}{self.on_cluster} AS {local_query}"
            )
            self.local_views.add(view)
        return statements

    def _alter(self, match: re.Match[str]) -> list[str]:
        database, table, rest = match["database"], match["table"], match["rest"]
        if table not in self.sharded:
            return [f"ALTER TABLE {database}.{table}{self.on_cluster} {rest}"]
        statements = [f"ALTER TABLE {database}.{self.local(table)}{self.on_cluster} {rest}"]
        if _COLUMN_ALTER_RE.match(rest):  # the Distributed table mirrors the columns
            statements.append(f"ALTER TABLE {database}.{table}{self.on_cluster} {rest}")
        return statements

    def _drop(self, match: re.Match[str]) -> list[str]:
        kind, database, table = match["kind"].upper(), match["database"], match["table"]
        names = [table]
        if table in self.sharded | self.local_views:
            names.append(self.local(table))
            self.sharded.discard(table)
            self.local_views.discard(table)
        return [f"DROP {kind} IF EXISTS {database}.{name}{self.on_cluster}" for name in names]
