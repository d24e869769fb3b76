"""ClickHouse fixtures (registered by the root conftest with ``pytest_plugins``).

- Every test process gets its own embedded ClickHouse data directory in a temporary path, set before
  anything opens the engine, so tests never touch ``var/chdb`` (and run while the demo does).
- ``clickhouse``: parametrised over the two backends, ``"chdb"`` (embedded) and ``"http"``
  (clickhouse-connect against ``ClickHouseHTTPServer``, which serves the same embedded engine: a
  process can only open one). Migrations are applied once per session; each test starts with empty
  tables and the analytics entry point pointed at its backend.
- ``clickhouse_faults``: make the backend's calls raise ``ClickHouseUnavailable``, as if ClickHouse
  went away mid-ingest (see ``ClickHouseFaults``).
"""

import itertools
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from analytics import clickhouse as ch
from analytics.clickhouse import ClickHouseUnavailable, migrations
from analytics.clickhouse.backends import ChdbBackend, HttpBackend
from analytics.clickhouse.embedded import close_engine, get_engine
from tests.support.clickhouse_http import ClickHouseHTTPServer

BACKENDS = ("chdb", "http")


@pytest.fixture(scope="session", autouse=True)
def _clickhouse_test_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Embedded ClickHouse data of this test process (never var/chdb), embedded by default."""
    from django.conf import settings

    saved = settings.CLICKHOUSE_DATA_DIR, settings.CLICKHOUSE_URL
    path = str(tmp_path_factory.mktemp("chdb"))
    settings.CLICKHOUSE_DATA_DIR, settings.CLICKHOUSE_URL = path, ""
    ch.reset()
    yield path
    ch.reset()
    close_engine()
    settings.CLICKHOUSE_DATA_DIR, settings.CLICKHOUSE_URL = saved


@pytest.fixture(scope="session")
def clickhouse_schema(_clickhouse_test_data_dir: str) -> str:
    """The ClickHouse schema, migrated once per test session; the database's name."""
    migrations.migrate()
    return ch.database_name()


@pytest.fixture(scope="session")
def clickhouse_http_server(_clickhouse_test_data_dir: str) -> Iterator[ClickHouseHTTPServer]:
    """A ClickHouse HTTP interface over the process's embedded engine, on a free local port."""
    from django.conf import settings

    engine = get_engine(_clickhouse_test_data_dir, settings.CLICKHOUSE_EMBEDDED_CONFIG or None)
    server = ClickHouseHTTPServer(engine).start()
    yield server
    server.stop()


@dataclass(frozen=True)
class ClickHouseTestDatabase:
    backend: str  # "chdb" or "http"
    database: str

    def count(self, table: str) -> int:
        """Rows in ``table`` as stored (before deduplication)."""
        rows = ch.query("SELECT count() AS n FROM {table:Identifier}", {"table": table})
        return rows[0]["n"]


def clickhouse_truncate(database: str) -> None:
    """Empty every table of ``database`` except the migration log."""
    tables = ch.query(
        "SELECT name FROM system.tables WHERE database = {database:String} "
        "AND engine LIKE '%MergeTree' AND name != 'schema_migrations'",
        {"database": database},
        use_database=False,
    )
    for table in tables:
        ch.command(
            "TRUNCATE TABLE {database:Identifier}.{table:Identifier}",
            {"database": database, "table": table["name"]},
        )


@pytest.fixture(params=BACKENDS, name="clickhouse")
def clickhouse_fixture(
    request: pytest.FixtureRequest, clickhouse_schema: str, settings: Any
) -> Iterator[ClickHouseTestDatabase]:
    """Empty ClickHouse tables, with the analytics entry point on the parametrised backend."""
    if request.param == "http":
        server = request.getfixturevalue("clickhouse_http_server")
        settings.CLICKHOUSE_URL = server.url(clickhouse_schema)
    else:
        settings.CLICKHOUSE_URL = ""
    clickhouse_truncate(clickhouse_schema)
    _reset_write_path()
    yield ClickHouseTestDatabase(backend=request.param, database=clickhouse_schema)
    ch.reset()
    _reset_write_path()


def _reset_write_path() -> None:
    """Each test starts with ClickHouse believed reachable (no outage left over from another test)."""
    from analytics.ingestion.services import clickhouse_breaker  # needs Django's app registry

    clickhouse_breaker.reset()


@pytest.fixture
def closed_tcp_port() -> int:
    """A local port nothing listens on (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- faults -----------------------------------------------------------------------------------------------
@dataclass
class Fault:
    """One injected outage: which calls it hits, after how many good ones, for how many."""

    methods: frozenset[str]
    after: int  # calls that still succeed before the outage starts
    times: int | None  # calls that fail (None: until ``stop()``)
    committed: bool  # the call reaches ClickHouse, then the caller sees the failure (a lost reply)
    failed: int = 0
    active: bool = True

    def stop(self) -> None:
        """ClickHouse is reachable again."""
        self.active = False

    def __enter__(self) -> "Fault":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class ClickHouseFaults:
    """Fault injection at the backend: calls raise ``ClickHouseUnavailable`` as if ClickHouse went away.

    Patches the methods of both backend classes for the test's duration, so it works whichever backend
    is active and needs no hook in production code::

        outage = clickhouse_faults.unavailable(after=3)   # the 4th insert on fails, until...
        ...
        outage.stop()                                     # ... ClickHouse is back
    """

    faults: list[Fault] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)

    def unavailable(
        self,
        *,
        methods: tuple[str, ...] = ("insert",),
        after: int = 0,
        times: int | None = None,
        committed: bool = False,
    ) -> Fault:
        fault = Fault(methods=frozenset(methods), after=after, times=times, committed=committed)
        self.faults.append(fault)
        return fault

    def _intercept(self, method: str, call: Any) -> Any:
        self.calls[method] = self.calls.get(method, 0) + 1
        for fault in self.faults:
            if not fault.active or method not in fault.methods:
                continue
            if fault.after > 0:
                fault.after -= 1
                continue
            if fault.times is not None and fault.failed >= fault.times:
                continue
            fault.failed += 1
            if fault.committed:
                call()
            raise ClickHouseUnavailable("ClickHouse is unreachable (fault injected by the test)")
        return call()


@pytest.fixture
def clickhouse_faults(monkeypatch: pytest.MonkeyPatch) -> ClickHouseFaults:
    """Inject ClickHouse outages into the active backend (see ``ClickHouseFaults``)."""
    faults = ClickHouseFaults()
    for cls, method in itertools.product((ChdbBackend, HttpBackend), ("insert", "query", "command", "ping")):
        original = getattr(cls, method)

        def patched(
            self: Any, *args: Any, _original: Any = original, _method: str = method, **kwargs: Any
        ) -> Any:
            return faults._intercept(_method, lambda: _original(self, *args, **kwargs))

        monkeypatch.setattr(cls, method, patched)
    return faults
