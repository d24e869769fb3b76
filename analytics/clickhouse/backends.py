"""The two ways to reach ClickHouse, running the same SQL: embedded chDB and a server over HTTP.

Both take SQL with ``{name:Type}`` placeholders and prepared parameters (``params.prepare``), return
rows as dicts keyed by column name with the same Python types, and raise only ``ClickHouseError`` /
``ClickHouseUnavailable``. ``analytics.clickhouse.client`` picks one from the settings.
"""

import logging
import math
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from analytics.clickhouse import native
from analytics.clickhouse.embedded import display_path, get_engine
from analytics.clickhouse.errors import (
    ClickHouseError,
    ClickHouseUnavailable,
    error_code,
    error_from_message,
)
from analytics.clickhouse.params import IDENTIFIER_RE, as_text

logger = logging.getLogger(__name__)


class Backend(Protocol):
    """What the entry point needs from a backend (``use_database=False``: outside the database)."""

    database: str

    def query(
        self, sql: str, params: Mapping[str, Any], settings: Mapping[str, Any], *, use_database: bool
    ) -> list[dict[str, Any]]: ...

    def command(
        self, sql: str, params: Mapping[str, Any], settings: Mapping[str, Any], *, use_database: bool
    ) -> None: ...

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        type_names: Sequence[str],
    ) -> int: ...

    def ping(self) -> str: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def quote_table(table: str, database: str) -> str:
    """```database`.`table``` for a validated ``table`` or ``database.table``."""
    parts = table.split(".")
    if len(parts) > 2 or not all(IDENTIFIER_RE.match(part) for part in parts):
        raise ValueError(f"Invalid ClickHouse table name {table!r}.")
    if len(parts) == 1:
        parts = [database, *parts]
    return ".".join(f"`{part}`" for part in parts)


def column_list(column_names: Sequence[str]) -> str:
    for name in column_names:
        if not IDENTIFIER_RE.match(name):
            raise ValueError(f"Invalid ClickHouse column name {name!r}.")
    return ", ".join(f"`{name}`" for name in column_names)


# Settings for every INSERT. Both tables partition by month and exposures may arrive years late (every
# exposure counts, docs/api.md): a block over more than the default 100 partitions would be refused by a
# server, and chDB dropped it without an error. So the limit is lifted for our inserts.
INSERT_SETTINGS = {"max_partitions_per_insert_block": 0}


# --- embedded ---------------------------------------------------------------------------------------
class ChdbBackend:
    """ClickHouse embedded in this process (chDB), data under ``CLICKHOUSE_DATA_DIR``."""

    def __init__(
        self,
        *,
        data_dir: str,
        database: str,
        query_timeout: float,
        config: str | None = None,
        insert_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.engine = get_engine(data_dir, config)
        self.database = database
        self.query_timeout = query_timeout
        self.settings = {"max_execution_time": max(1, math.ceil(query_timeout))}
        self.insert_settings = {**INSERT_SETTINGS, **(insert_settings or {})}

    def _database(self, use_database: bool) -> str | None:
        return self.database if use_database else None

    def query(self, sql, params, settings, *, use_database):
        data = self.engine.execute(
            sql,
            fmt="Native",
            params=as_text(params),
            settings={**self.settings, **settings},
            database=self._database(use_database),
            timeout=self.query_timeout,
        )
        return native.decode(data)

    def command(self, sql, params, settings, *, use_database):
        self.engine.execute(
            sql,
            fmt="TabSeparated",
            params=as_text(params),
            settings={**self.settings, **settings},
            database=self._database(use_database),
            timeout=self.query_timeout,
        )

    def insert(self, table, rows, column_names, type_names):
        try:
            data = native.encode(column_names, type_names, rows)
        except (TypeError, ValueError, AttributeError, OverflowError, struct.error) as exc:
            raise ClickHouseError(f"Rows for {table} do not match its column types: {exc}") from exc
        statement = f"INSERT INTO {quote_table(table, self.database)} ({column_list(column_names)})"
        written = self.engine.insert(
            statement,
            data,
            settings={**self.settings, **self.insert_settings},
            database=self.database,
            timeout=self.query_timeout,
        )
        if written < len(rows):
            # chDB's streamed insert does not raise what a server would (TOO_MANY_PARTS while merges lag
            # behind, for one): it reports fewer rows written and stores none. Treated as the transient
            # error it is, so the caller spools the rows and the drain retries them (a replay of rows
            # that did land counts once: the tables collapse replays).
            raise ClickHouseUnavailable(
                f"The embedded ClickHouse stored {written} of {len(rows)} rows into {table} without "
                "saying why (a server would have answered an error such as too many parts); retrying later.",
                code=252,
            )
        return written

    def ping(self) -> str:
        return self.query("SELECT version() AS version", {}, {}, use_database=False)[0]["version"]

    def describe(self) -> str:
        return f"embedded chDB, data in {display_path(self.engine.path)}"

    def close(self) -> None:
        # The engine outlives a backend: the test HTTP server and the next backend share it.
        pass


# --- server over HTTP -------------------------------------------------------------------------------
_CLIENT_ARGS = {"compress", "verify", "ca_cert", "client_cert", "client_cert_key", "client_name"}


@dataclass(frozen=True)
class ServerAddress:
    """``CLICKHOUSE_URL`` taken apart: ``http(s)://user:pass@host:port/database?compress=false``."""

    interface: str
    host: str
    port: int
    username: str
    password: str
    database: str
    client_args: Mapping[str, str]
    server_settings: Mapping[str, str]

    @classmethod
    def parse(cls, url: str, *, default_database: str) -> "ServerAddress":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClickHouseError(
                f"CLICKHOUSE_URL must look like http://user:pass@host:8123/database, got {url!r}"
            )
        database = unquote(parts.path.strip("/")) or default_database
        if not IDENTIFIER_RE.match(database):
            raise ClickHouseError(f"The ClickHouse database name {database!r} is not a plain identifier.")
        query = dict(parse_qsl(parts.query))
        return cls(
            interface=parts.scheme,
            host=parts.hostname,
            port=parts.port or (8443 if parts.scheme == "https" else 8123),
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            database=database,
            client_args={k: v for k, v in query.items() if k in _CLIENT_ARGS},
            server_settings={k: v for k, v in query.items() if k not in _CLIENT_ARGS},
        )


def _network_reason(exc: BaseException) -> str:
    """The network-level reason under clickhouse-connect's wrapping, e.g. "[Errno 111] Connection refused"."""
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        return str(exc)
    text = str(getattr(cause, "reason", None) or cause)
    return text.rpartition("): ")[2] or text


def _translate(exc: Exception, where: str) -> ClickHouseError:
    """clickhouse-connect's exceptions as ours: unreachable and timeouts are transient."""
    from clickhouse_connect.driver import exceptions as cc

    message = " ".join(str(exc).split())
    code = error_code(message)
    if isinstance(exc, cc.OperationalError):
        if code is not None:  # the server answered 503/504 or similar with an exception text
            return ClickHouseUnavailable(message, code=code)
        return ClickHouseUnavailable(f"ClickHouse at {where} is unreachable: {_network_reason(exc)}")
    if isinstance(exc, cc.DatabaseError | cc.StreamFailureError):
        return error_from_message(message)
    return ClickHouseError(message)


class HttpBackend:
    """A ClickHouse server through clickhouse-connect (HTTP), from ``CLICKHOUSE_URL``."""

    def __init__(
        self,
        *,
        url: str,
        default_database: str,
        query_timeout: float,
        connect_timeout: float,
        insert_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.address = ServerAddress.parse(url, default_database=default_database)
        self.insert_settings = {**INSERT_SETTINGS, **(insert_settings or {})}
        self.database = self.address.database
        self.query_timeout = query_timeout
        self.connect_timeout = connect_timeout
        self._client: Any = None
        self._client_lock = threading.Lock()

    def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        with self._client_lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        import clickhouse_connect
        from clickhouse_connect.driver import exceptions as cc

        address = self.address
        try:
            client = clickhouse_connect.get_client(
                interface=address.interface,
                host=address.host,
                port=address.port,
                username=address.username,
                password=address.password,
                # Connect without a database so that the bootstrap (CREATE DATABASE) and the checks
                # work before it exists; every other call runs in it (set just below).
                database="",
                connect_timeout=max(1, math.ceil(self.connect_timeout)),
                send_receive_timeout=max(1, math.ceil(self.query_timeout)),
                # One client is shared by every thread: no HTTP session, so calls can overlap.
                autogenerate_session_id=False,
                tz_mode="aware",
                settings={
                    **address.server_settings,
                    "max_execution_time": max(1, math.ceil(self.query_timeout)),
                },
                **address.client_args,
            )
        except (cc.Error, cc.StreamFailureError) as exc:
            raise _translate(exc, self.describe_url()) from exc
        client.database = self.database
        return client

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from clickhouse_connect.driver import exceptions as cc

        client = self._get_client()
        try:
            return getattr(client, method)(*args, **kwargs)
        except (cc.Error, cc.StreamFailureError) as exc:
            raise _translate(exc, self.describe_url()) from exc
        except (TypeError, ValueError, AttributeError, OverflowError, struct.error) as exc:
            # Serialising an insert: a value that does not fit its column's type.
            raise ClickHouseError(f"ClickHouse {method} failed: {exc}") from exc

    def _settings(self, settings: Mapping[str, Any], use_database: bool) -> dict[str, Any]:
        # ``database`` is a transport setting: an empty value sends the call outside any database.
        return dict(settings) if use_database else {**settings, "database": ""}

    def query(self, sql, params, settings, *, use_database):
        from clickhouse_connect.driver.query import QueryContext

        if QueryContext(query=sql).is_command:
            # clickhouse-connect would answer a statement with its summary; chDB answers no rows.
            self.command(sql, params, settings, use_database=use_database)
            return []
        result = self._call(
            "query", sql, parameters=dict(params), settings=self._settings(settings, use_database)
        )
        return list(result.named_results())

    def command(self, sql, params, settings, *, use_database):
        self._call(
            "command", sql, parameters=dict(params), settings=dict(settings), use_database=use_database
        )

    def insert(self, table, rows, column_names, type_names):
        parts = table.split(".")
        database, name = (parts[0], parts[1]) if len(parts) == 2 else (self.database, parts[0])
        quote_table(table, self.database)  # validates
        summary = self._call(
            "insert",
            name,
            data=rows,
            column_names=list(column_names),
            database=database,
            column_type_names=list(type_names),
            settings=self.insert_settings,
        )
        return int(summary.written_rows) if summary.written_rows else len(rows)

    def ping(self) -> str:
        return self.query("SELECT version() AS version", {}, {}, use_database=False)[0]["version"]

    def describe_url(self) -> str:
        return f"{self.address.interface}://{self.address.host}:{self.address.port}"

    def describe(self) -> str:
        return f"server at {self.describe_url()}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
