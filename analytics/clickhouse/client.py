"""The one entry point for ClickHouse: ``query``, ``command``, ``insert``, ``ping``.

Every ClickHouse call in the project goes through these functions (PostHog's ``sync_execute``). They
pick the backend from the settings (``CLICKHOUSE_URL`` set: a server over HTTP through
clickhouse-connect; unset: chDB embedded in this process, data in ``CLICKHOUSE_DATA_DIR``), run calls
in the ``CLICKHOUSE_DATABASE`` database (or the one in the URL's path), apply the timeouts, bind
values as server-side parameters and raise only ``ClickHouseError`` / ``ClickHouseUnavailable``.

Values are always bound, never formatted into SQL: write ``{name:Type}`` placeholders and pass
``params={"name": value}``::

    rows = query(
        "SELECT unit_id, count() AS events FROM events_dedup WHERE name = {name:String} GROUP BY unit_id",
        {"name": "purchase"},
    )
    rows[0]["events"]

Rows come back as dicts keyed by column name, with the same Python types on both backends (UUID,
UTC-aware datetime, dict for Map, list for Array, None for NULL).
"""

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings as django_settings

from analytics.clickhouse.backends import Backend, ChdbBackend, HttpBackend, quote_table
from analytics.clickhouse.errors import ClickHouseError
from analytics.clickhouse.params import IDENTIFIER_RE, prepare

logger = logging.getLogger("analytics.clickhouse")

_lock = threading.Lock()
_backend: Backend | None = None
_backend_key: tuple[Any, ...] | None = None
_column_types: dict[tuple[tuple[Any, ...], str], dict[str, str]] = {}


def _settings_key() -> tuple[Any, ...]:
    return (
        django_settings.CLICKHOUSE_URL,
        str(django_settings.CLICKHOUSE_DATA_DIR),
        django_settings.CLICKHOUSE_DATABASE,
        float(django_settings.CLICKHOUSE_QUERY_TIMEOUT),
        float(django_settings.CLICKHOUSE_CONNECT_TIMEOUT),
        django_settings.CLICKHOUSE_EMBEDDED_CONFIG,
        django_settings.CLICKHOUSE_CLUSTER,
        django_settings.CLICKHOUSE_INSERT_QUORUM,
    )


def _build_backend(key: tuple[Any, ...]) -> Backend:
    url, data_dir, database, query_timeout, connect_timeout, config, cluster, quorum = key
    insert_settings = cluster_insert_settings(cluster, quorum)
    if url:
        return HttpBackend(
            url=url,
            default_database=database,
            query_timeout=query_timeout,
            connect_timeout=connect_timeout,
            insert_settings=insert_settings,
        )
    if not IDENTIFIER_RE.match(database):
        raise ClickHouseError(f"CLICKHOUSE_DATABASE must be a plain identifier, got {database!r}.")
    return ChdbBackend(
        data_dir=data_dir,
        database=database,
        query_timeout=query_timeout,
        config=config or None,
        insert_settings=insert_settings,
    )


def cluster_insert_settings(cluster: str, quorum: str) -> dict[str, Any]:
    """ClickHouse settings for every insert on a cluster (none on a single server).

    ``distributed_foreground_insert``: an insert into a ``Distributed`` table returns once every shard
    has the rows (by default the table queues them on the receiving node's disk and sends them later),
    so an acknowledged batch is on its shard, a failure reaches the caller (which spools and retries),
    and a read right after a write sees it. ``insert_quorum``: that many replicas of the shard have it
    (``CLICKHOUSE_INSERT_QUORUM``; ClickHouse forwards the setting to the shard's insert).
    """
    if not cluster:
        return {}
    settings: dict[str, Any] = {"distributed_foreground_insert": 1}
    if quorum not in ("", "0"):
        settings["insert_quorum"] = quorum if quorum == "auto" else int(quorum)
    return settings


def get_backend() -> Backend:
    """The backend the current settings name (rebuilt when they change, e.g. in tests)."""
    global _backend, _backend_key
    key = _settings_key()
    with _lock:
        if _backend is None or key != _backend_key:
            if _backend is not None:
                _backend.close()
            _backend, _backend_key = _build_backend(key), key
        return _backend


def reset() -> None:
    """Forget the client and the cached column types (after migrations, or a change of settings)."""
    global _backend, _backend_key
    with _lock:
        if _backend is not None:
            _backend.close()
        _backend, _backend_key = None, None
        _column_types.clear()


def forget_column_types() -> None:
    """Forget the cached column types of tables (the schema changed)."""
    with _lock:
        _column_types.clear()


def database_name() -> str:
    """The database every call runs in: the URL's path, else ``CLICKHOUSE_DATABASE``."""
    return get_backend().database


def _timed(kind: str, sql: str, started: float) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("clickhouse %s %.1f ms: %s", kind, (time.perf_counter() - started) * 1000, sql[:200])


def query(
    sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    use_database: bool = True,
) -> list[dict[str, Any]]:
    """Run a statement that returns rows; the rows as dicts keyed by column name.

    ``params`` fill the SQL's ``{name:Type}`` placeholders (bound by ClickHouse, never formatted).
    ``settings`` are ClickHouse settings for this statement. ``use_database=False`` runs outside the
    configured database (only for statements that must work before it exists).
    """
    started = time.perf_counter()
    prepared = prepare(sql, params)
    rows = get_backend().query(sql, prepared, dict(settings or {}), use_database=use_database)
    _timed("query", sql, started)
    return rows


def command(
    sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    use_database: bool = True,
) -> None:
    """Run a statement for its effect (DDL, ``INSERT ... SELECT``, ``TRUNCATE``); see ``query``."""
    started = time.perf_counter()
    prepared = prepare(sql, params)
    get_backend().command(sql, prepared, dict(settings or {}), use_database=use_database)
    _timed("command", sql, started)


def _type_names(backend: Backend, table: str, column_names: Sequence[str]) -> list[str]:
    cache_key = (_backend_key, quote_table(table, backend.database))
    types = _column_types.get(cache_key)
    if types is None:
        database, _, name = table.rpartition(".")
        rows = backend.query(
            "SELECT name, type FROM system.columns "
            "WHERE database = {database:String} AND table = {table:String}",
            {"database": database or backend.database, "table": name},
            {},
            use_database=False,
        )
        if not rows:
            raise ClickHouseError(
                f"Table {database or backend.database}.{name} does not exist; "
                "run `manage.py clickhouse_migrate`."
            )
        types = _column_types[cache_key] = {row["name"]: row["type"] for row in rows}
    unknown = [name for name in column_names if name not in types]
    if unknown:
        raise ClickHouseError(f"Table {table} has no column {', '.join(unknown)}.")
    return [types[name] for name in column_names]


def insert(table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> int:
    """Insert ``rows`` (sequences in ``column_names`` order) in one batch; the number of rows written.

    Python values are encoded in ClickHouse's binary ``Native`` format by the column's type (UUID or
    str for UUID, datetime or ISO string for DateTime64, dict for Map); nothing goes through SQL text.
    One call is one INSERT, so send batches (thousands of rows), not single rows.
    """
    if not rows:
        return 0
    started = time.perf_counter()
    backend = get_backend()
    type_names = _type_names(backend, table, column_names)
    written = backend.insert(table, rows, list(column_names), type_names)
    _timed("insert", f"{table} ({len(rows)} rows)", started)
    return written


def ping() -> str:
    """The server's version; raises ``ClickHouseUnavailable`` when it cannot be reached."""
    return get_backend().ping()
