"""The embedded ClickHouse engine (chDB): one per process, shared by every thread.

chDB runs ClickHouse inside this process with its data in a directory (``CLICKHOUSE_DATA_DIR``). Only
one process can own a data directory, and a process can have only one open at a time, so the engine
is a module-level singleton created on first use and guarded by a lock: one statement runs at a time,
whichever thread sends it. The test suite's ClickHouse HTTP server (``tests/support``) runs its
requests through the same engine.
"""

import fcntl
import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analytics.clickhouse.errors import ClickHouseUnavailable, error_from_message
from analytics.clickhouse.params import IDENTIFIER_RE

logger = logging.getLogger(__name__)

_SETTING_TEXT_RE = re.compile(r"^[A-Za-z0-9_.:/+\-]*$")


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _owned_by_another_process(path: Path) -> bool:
    """True when another process holds the data directory's lock (ClickHouse flocks ``status``)."""
    status = path / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _in_use_error(path: Path) -> ClickHouseUnavailable:
    return ClickHouseUnavailable(
        f"the embedded ClickHouse data in {display_path(path)} is in use by another process "
        "(is `make demo` / the server running?); stop it or set CLICKHOUSE_URL"
    )


def _setting_sql(name: str, value: Any) -> str:
    """``SET name = value`` for a validated setting; settings are not user data, but are checked anyway."""
    if not IDENTIFIER_RE.match(name):
        raise ValueError(f"Invalid ClickHouse setting name {name!r}.")
    if value is None:
        return f"SET {name} = DEFAULT"
    if isinstance(value, bool):
        text = "1" if value else "0"
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str) and _SETTING_TEXT_RE.match(value):
        text = f"'{value}'"
    else:
        raise ValueError(f"Unsupported value for ClickHouse setting {name}: {value!r}.")
    return f"SET {name} = {text}"


class EmbeddedEngine:
    """One open chDB data directory; every call runs under its lock.

    ``config``: a ClickHouse server configuration file for the engine (``CLICKHOUSE_EMBEDDED_CONFIG``),
    e.g. ``remote_servers`` and ``macros`` that give it a cluster whose replicas are itself.
    """

    def __init__(self, path: Path, config: Path | None = None) -> None:
        self.path = path
        self.config = config
        self.lock = threading.Lock()
        self._session: Any = None
        self._database: str | None = None  # the session's current database (USE)
        self._settings: dict[str, Any] = {}  # settings this engine has SET, by name

    # --- lifecycle -------------------------------------------------------------------------------
    def _open(self) -> Any:
        if self._session is not None:
            return self._session
        if _owned_by_another_process(self.path):
            raise _in_use_error(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        from chdb import session as chdb_session  # imported late: loading chDB takes a while

        try:
            # chDB's connection string: ``file:<dir>?config-file=<file>`` reads a server configuration.
            target = f"file:{self.path}?config-file={self.config}" if self.config else str(self.path)
            self._session = chdb_session.Session(target)
        except RuntimeError as exc:  # chDB says only "Error initializing EmbeddedServer"
            if _owned_by_another_process(self.path):
                raise _in_use_error(self.path) from None
            raise ClickHouseUnavailable(
                f"could not open the embedded ClickHouse data in {display_path(self.path)}: {exc}"
            ) from exc
        self._database = "default"
        self._settings = {}
        logger.debug("Opened embedded ClickHouse (chDB) in %s", self.path)
        return self._session

    def close(self) -> None:
        with self.lock:
            if self._session is not None:
                self._session.close()
                self._session = None
                logger.debug("Closed embedded ClickHouse (chDB) in %s", self.path)

    def _acquire(self, timeout: float) -> None:
        if not self.lock.acquire(timeout=timeout):
            raise ClickHouseUnavailable(
                f"the embedded ClickHouse stayed busy for {timeout:g}s; try again later"
            )

    # --- per-call state --------------------------------------------------------------------------
    def _run(
        self, session: Any, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None
    ) -> Any:
        try:
            return session.query(sql, fmt, params=dict(params or {}))
        except RuntimeError as exc:  # chDB's ChdbError (a RuntimeError) carries ClickHouse's text
            raise error_from_message(str(exc)) from None

    def _prepare(self, session: Any, database: str | None, settings: Mapping[str, Any]) -> None:
        """Make the session's database and settings those of this call (changing only what differs)."""
        database = database or "default"
        if database != self._database:
            if not IDENTIFIER_RE.match(database):
                raise ValueError(f"Invalid ClickHouse database name {database!r}.")
            self._run(session, f"USE {database}")
            self._database = database
        for name in [name for name in self._settings if name not in settings]:
            self._run(session, _setting_sql(name, None))
            del self._settings[name]
        for name, value in settings.items():
            if self._settings.get(name, object()) != value:
                self._run(session, _setting_sql(name, value))
                self._settings[name] = value

    # --- statements --------------------------------------------------------------------------------
    def execute(
        self,
        sql: str,
        *,
        fmt: str = "Native",
        params: Mapping[str, str] | None = None,
        settings: Mapping[str, Any] | None = None,
        database: str | None = None,
        timeout: float,
    ) -> bytes:
        """Run one statement; the result in ``fmt`` (a ``FORMAT`` clause in the SQL wins).

        ``params`` are in ClickHouse's parameter text form (``params.as_text``).
        """
        self._acquire(timeout)
        try:
            session = self._open()
            self._prepare(session, database, settings or {})
            result = self._run(session, sql, fmt, params)
            return result.bytes() if result is not None else b""
        finally:
            self.lock.release()

    def insert(
        self,
        statement: str,
        data: bytes,
        *,
        fmt: str = "Native",
        settings: Mapping[str, Any] | None = None,
        database: str | None = None,
        timeout: float,
    ) -> int:
        """Stream ``data`` (encoded in ``fmt``) into ``statement`` (``INSERT INTO t (cols)``).

        Returns the number of rows written.
        """
        self._acquire(timeout)
        try:
            session = self._open()
            self._prepare(session, database, settings or {})
            try:
                with session.send_insert(statement, fmt) as inserter:
                    inserter.append(data)
                    result = inserter.finish()
            except RuntimeError as exc:  # chDB wraps ClickHouse's text in RuntimeError here
                raise error_from_message(str(exc)) from None
            return int(result.rows_written)
        finally:
            self.lock.release()


_engines_lock = threading.Lock()
_engine: EmbeddedEngine | None = None


def get_engine(path: str | os.PathLike[str], config: str | os.PathLike[str] | None = None) -> EmbeddedEngine:
    """The process's engine for ``path`` (and server configuration file ``config``); switching either
    closes the previous one (chDB allows one per process)."""
    global _engine
    resolved = Path(path).expanduser().resolve()
    config_path = Path(config).expanduser().resolve() if config else None
    if config_path is not None and not config_path.is_file():
        raise ClickHouseUnavailable(f"the embedded ClickHouse configuration {config_path} does not exist")
    with _engines_lock:
        if _engine is not None and (_engine.path, _engine.config) != (resolved, config_path):
            _engine.close()
            _engine = None
        if _engine is None:
            _engine = EmbeddedEngine(resolved, config_path)
        return _engine


def close_engine() -> None:
    """Release the data directory (so another process can own it)."""
    global _engine
    with _engines_lock:
        if _engine is not None:
            _engine.close()
            _engine = None
