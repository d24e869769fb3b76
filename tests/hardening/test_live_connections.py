"""Against a live gunicorn, run as ``make serve`` runs it (one worker, eight threads): every request
gets an HTTP answer, including the next one on a connection whose last request was answered before
its body was read.

The defect (issue 11, schemathesis' "Network Error"): an answer made without reading the body (401
without a key, 413 over the limit) left the body to gunicorn, whose threaded worker reads it after
sending the answer. A client that sent its next request at once raced that read: gunicorn could
buffer the next request while draining, then wait on a socket with nothing more to say and close the
connection at its keep-alive timeout, the request unanswered ("Remote end closed connection without
response"); it happened to about a third of such pairs on the development machine. And when gunicorn
closed the connection after such an answer (``Connection: close``, HTTP/1.0), a client still sending
the body got "connection reset".
"""

import http.client
import socket
import time
from collections.abc import Iterator

import pytest

from bench.server import BenchPlatform

# a migrated platform and a gunicorn of its own (module-scoped, about 40 s): the xdist_group keeps
# the module's tests on one pytest-xdist worker, so it starts once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live_connections")]

MIB = 1024 * 1024
PAIRS = 15  # an early answer, then a normal request, on one connection; each pair raced before the fix


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[BenchPlatform, str]]:
    with BenchPlatform(threads=8) as platform:
        key = platform.manage("create_sdk_key", "production").strip().splitlines()[-1]
        platform.serve()
        yield platform, key


def padded(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    start, end = b'{"unit_id": "u-1", "pad": "', b'"}'
    return start + b"x" * (size - len(start) - len(end)) + end


@pytest.mark.parametrize(
    ("early", "status"),
    [
        pytest.param({"key": "sdk_not_a_key", "size": 100}, 401, id="401-without-a-valid-key"),
        pytest.param({"key": None, "size": 2 * MIB}, 413, id="413-over-the-limit"),
    ],
)
def test_live__early_answers_on_a_keep_alive_connection__every_next_request_answered(live, early, status):
    platform, key = live
    connection = http.client.HTTPConnection("127.0.0.1", platform.port, timeout=30)
    statuses = []
    try:
        for _ in range(PAIRS):
            # An answer made before the body is read...
            headers = {"Authorization": f"Bearer {early['key'] or key}", "Content-Type": "application/json"}
            connection.request("POST", "/api/v1/evaluate", body=padded(early["size"]), headers=headers)
            first = connection.getresponse()
            first.read()
            # ...then at once the next request on the same connection.
            headers["Authorization"] = f"Bearer {key}"
            connection.request("POST", "/api/v1/evaluate", body=b'{"unit_id": "u-1"}', headers=headers)
            second = connection.getresponse()
            second.read()
            statuses.append((first.status, second.status))
    finally:
        connection.close()
    assert statuses == [(status, 200)] * PAIRS


def exchange(port: int, head: bytes, body: bytes, *, pause_after: int = 64 * 1024) -> bytes:
    """Send the head and the first ``pause_after`` bytes of the body, pause, send the rest, and read
    everything until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body[:pause_after])
        time.sleep(0.3)  # the answer is decided meanwhile, with most of the body not sent yet
        sock.sendall(body[pause_after:])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def request_head(path: str, *, length: int | None, key: str | None, version: str = "HTTP/1.1") -> bytes:
    lines = [f"POST {path} {version}", "Host: 127.0.0.1", "Content-Type: application/json"]
    if version == "HTTP/1.1":
        lines.append("Connection: close")
    if key:
        lines.append(f"Authorization: Bearer {key}")
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("path", "size", "with_key", "version", "status"),
    [
        pytest.param(
            "/ofrep/v1/evaluate/flags", 3 * MIB, True, "HTTP/1.1", b"413", id="ofrep-over-the-limit"
        ),
        pytest.param("/api/v1/events", 3 * MIB, True, "HTTP/1.0", b"413", id="events-over-the-limit-http10"),
        pytest.param("/api/v1/assign", MIB - 1024, False, "HTTP/1.1", b"401", id="assign-without-key"),
        pytest.param("/api/v1/metrics/", 3 * MIB, False, "HTTP/1.1", b"413", id="management-over-the-limit"),
    ],
)
def test_live__early_answer_then_connection_closed__answer_arrives_after_a_slow_body(
    live, path, size, with_key, version, status
):
    # The body is read before the answer goes out: a client still sending gets it, nothing hangs.
    platform, key = live
    head = request_head(path, length=size, key=key if with_key else None, version=version)
    answer = exchange(platform.port, head, padded(size))
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1:2] == [status], answer[:300]


def test_live__chunked_body_without_key__answered(live):
    platform, _ = live
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(32)) + b"0\r\n\r\n"
    answer = exchange(platform.port, request_head("/api/v1/evaluate", length=None, key=None), body)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
