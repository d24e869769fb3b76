"""ClickHouse: the one entry point, its errors, the schema migrations.

``query(sql, params, *, settings)`` -> rows as dicts, ``command(sql, params)``, ``insert(table, rows,
column_names)``, ``ping()``; values are bound through ``{name:Type}`` placeholders (see ``client``).

What readers must do: ``events`` and ``exposures`` are ReplacingMergeTree tables; a replayed event
(same event_id) or an identical exposure is stored twice until a background merge collapses it, so
a plain ``SELECT`` on them may count it twice. Analysis reads the ``events_dedup`` and
``exposures_dedup`` views (the tables ``FINAL``), which count each event_id once; filters on the
sorting key (``name``, ``experiment``, ``unit_id``) still use the primary index through them. See
``migrations_sql/`` for the why of each table's engine, key and partitioning.
"""

from analytics.clickhouse.client import command, database_name, get_backend, insert, ping, query, reset
from analytics.clickhouse.errors import ClickHouseError, ClickHouseUnavailable

__all__ = [
    "ClickHouseError",
    "ClickHouseUnavailable",
    "command",
    "database_name",
    "get_backend",
    "insert",
    "ping",
    "query",
    "reset",
]
