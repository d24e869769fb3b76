"""A ClickHouse HTTP interface served over chDB inside the test process.

No ClickHouse server that clickhouse-connect can talk to installs on these machines, and a process can
open only one chDB engine, so the "http" backend is tested against this: a ``ThreadingHTTPServer`` on
127.0.0.1 that runs every request through the process's embedded engine (the very one the "chdb"
backend uses). It implements what clickhouse-connect sends with ``compress=False``:

- ``GET /ping``;
- a query as the POST body (or the ``query`` URL parameter), ``param_<name>`` URL parameters bound
  server-side, ClickHouse settings as URL parameters, ``database``, output in the query's ``FORMAT``
  (``Native`` for queries, TabSeparated by default, as ClickHouse does);
- ``INSERT INTO t (cols) FORMAT Native`` followed by the data in one (chunked) body;
- errors as status 500 with ClickHouse's exception text and ``X-ClickHouse-Exception-Code``.
"""

import re
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from analytics.clickhouse.embedded import EmbeddedEngine
from analytics.clickhouse.errors import ClickHouseError

# URL parameters that are part of the HTTP protocol, not ClickHouse settings.
_TRANSPORT_PARAMS = {
    "query",
    "database",
    "default_format",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "compress",
    "decompress",
    "wait_end_of_query",
    "client_protocol_version",
    "user",
    "password",
    "quota_key",
    "buffer_size",
    "role",
    "enable_http_compression",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "cancel_http_readonly_queries_on_client_close",
}
_INSERT_RE = re.compile(
    rb"^\s*(?P<statement>INSERT\s+INTO\s+.+?)\s+FORMAT\s+(?P<format>\w+)[ \t]*(?:\r?\n|$)",
    re.IGNORECASE | re.DOTALL,
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's connection pool expects
    server: "ClickHouseHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    # --- plumbing ---------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, exc: ClickHouseError) -> None:
        headers = {"Content-Type": "text/plain; charset=UTF-8"}
        headers["X-ClickHouse-Exception-Code"] = str(exc.code if exc.code is not None else 1002)
        self._reply(500, f"{exc}\n".encode(), headers)

    # --- requests ---------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") == "/ping" or "query" not in dict(parse_qsl(parts.query)):
            self._reply(200, b"Ok.\n")
            return
        self._handle(b"")

    def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        self._handle(self._body())

    def _handle(self, body: bytes) -> None:
        self.server.requests += 1
        url_params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        bound = {k[len("param_") :]: v for k, v in url_params.items() if k.startswith("param_")}
        settings = {
            k: v for k, v in url_params.items() if k not in _TRANSPORT_PARAMS and not k.startswith("param_")
        }
        database = url_params.get("database") or None
        query = url_params.get("query", "").encode()
        engine, timeout = self.server.engine, self.server.timeout_seconds
        try:
            insert = _INSERT_RE.match(query or body[:65536])
            if insert:
                data = body if query else body[insert.end() :]
                statement = insert.group("statement").decode()
                fmt = insert.group("format").decode()
                engine.insert(statement, data, fmt=fmt, settings=settings, database=database, timeout=timeout)
                self._reply(200, b"")
                return
            sql = (query + b"\n" + body if query and body else query or body).decode()
            fmt = url_params.get("default_format", "TabSeparated")
            result = engine.execute(
                sql, fmt=fmt, params=bound, settings=settings, database=database, timeout=timeout
            )
        except ClickHouseError as exc:
            self._error(exc)
            return
        except ValueError as exc:  # a setting or database name the engine refuses
            self._error(ClickHouseError(f"Code: 115. DB::Exception: {exc}", code=115))
            return
        self._reply(200, result, {"Content-Type": "application/octet-stream"})


class ClickHouseHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, engine: EmbeddedEngine, *, port: int = 0, timeout_seconds: float = 60.0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.engine = engine
        self.timeout_seconds = timeout_seconds
        self.requests = 0
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, database: str) -> str:
        """A ``CLICKHOUSE_URL`` for this server (uncompressed: the server does not decompress)."""
        return f"http://default@127.0.0.1:{self.port}/{database}?compress=false"

    def start(self) -> "ClickHouseHTTPServer":
        self._thread = threading.Thread(target=self.serve_forever, name="clickhouse-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
