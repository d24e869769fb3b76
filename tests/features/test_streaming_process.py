"""The stream server as operators run it: ``uvicorn config.asgi:application`` in a process of its own.

A migrated SQLite workspace in a temporary directory; the server is started as ``make serve`` and
compose's ``stream`` service start it. It advertises streaming on ``/api/features`` and streams the
payload; with ``REDIS_URL`` set, a flag created by another process (``manage.py shell``, as the web
process or a worker would write) reaches the open stream.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a migrated workspace and a server of its own: ~40 s

ROOT = Path(__file__).resolve().parents[2]
WAIT = 15.0
# uvicorn on port 0 (the system picks a free one: tests run side by side under pytest-xdist) says where
STARTED = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def _read_event(response: http.client.HTTPResponse, deadline: float) -> dict:
    """The next server-sent event (comments skipped) as {"event", "id", "data"}."""
    fields: dict = {}
    data: list[str] = []
    while time.monotonic() < deadline:
        line = response.readline().decode()
        if not line:
            raise AssertionError("the stream ended")
        line = line.rstrip("\n")
        if not line:
            if data or fields:
                fields["data"] = json.loads("\n".join(data)) if data else None
                return fields
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    raise AssertionError("no event in time")


@pytest.fixture
def workspace(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CLICKHOUSE_URL")},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PLATFORM_VAR_DIR": str(tmp_path),
        "EMBEDDED_SCHEDULER": "0",
        "CACHE_KEY_PREFIX": f"stream-{uuid.uuid4().hex[:8]}",  # its own generation and channel in Redis
        "SDK_STREAM_KEEPALIVE_SECONDS": "1",
    }

    def manage(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    manage("migrate", "--noinput", "-v0")
    key = manage("create_sdk_key", "production", "--client").strip().splitlines()[-1]
    log_path = tmp_path / "uvicorn.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", "0",
         "--timeout-graceful-shutdown", "2"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (started := STARTED.search(log_path.read_text())):
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.2)
        port = int(started.group(1))
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        yield key, manage, port
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_stream_process__config_asgi__advertises_streams_and_carries_changes_from_another_process(workspace):
    key, manage, port = workspace
    # The payload, from the same process (Django in its threads), advertises streaming
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    connection.request("GET", f"/api/features/{key}")
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    assert response.getheader("x-sse-support") == "enabled"
    # The stream opens with the payload
    stream = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    stream.request("GET", f"/sub/{key}", headers={"Accept": "text/event-stream"})
    events = stream.getresponse()
    assert events.status == 200
    assert events.getheader("content-type").startswith("text/event-stream")
    first = _read_event(events, time.monotonic() + WAIT)
    assert first["event"] == "features" and first["data"]["features"] == {}
    if not os.environ.get("REDIS_URL"):
        stream.close()
        pytest.skip("a change from another process reaches the stream through Redis (REDIS_URL): CI sets it")
    # When another process creates a flag
    manage(
        "shell",
        "-c",
        "from features.services import feature_create; feature_create(user=None, key='from_elsewhere', "
        "name='x', type='boolean', default_value=True, environments={'production': {'enabled': True}})",
    )
    # Then the open stream carries it
    deadline = time.monotonic() + WAIT
    while True:
        event = _read_event(events, deadline)
        if "from_elsewhere" in event["data"]["features"]:
            break
    assert event["data"]["features"]["from_elsewhere"] == {"defaultValue": True}
    stream.close()
