"""Load on loopback: mixed SDK traffic against gunicorn, no errors, no lost event.

A throw-away platform (``bench.server.BenchPlatform``: its own SQLite, embedded chDB, debug off)
with 50 flags of 5 rules and 5 running experiments (``bench.evaluate``'s workspace), served by one
gunicorn worker with threads, so one process owns the embedded ClickHouse as in the default
deployment. ``CLIENTS`` threads send a mix of OFREP (single and bulk), evaluate, assign (logging
exposures) and event batches for ``LOAD_SECONDS``, each on its own keep-alive connection, with the
rate limiter counting (limit set out of reach). Every answer must be the success status: no 5xx, no
4xx, no connection error. Then gunicorn stops, a separate process (the test process may hold
another chDB engine; a process can open one data directory) drains the spool and counts the
events in ``events_dedup``: exactly the number acknowledged with 202.
"""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from bench.server import BenchPlatform
from tests.hardening.conftest import write_artifact

# serial: the throughput and latencies it reports (test-artifacts/) are the platform's own, so no other
# test shares the cores meanwhile (under pytest-xdist the other workers wait; tests/support/parallel.py)
pytestmark = [pytest.mark.slow, pytest.mark.serial]

ROOT = Path(__file__).resolve().parents[2]
LOAD_SECONDS = float(os.environ.get("HARDENING_LOAD_SECONDS", "20"))  # at most 30: CI's budget
CLIENTS = 6
GUNICORN_THREADS = 8
EVENTS_PER_BATCH = 50
ATTRIBUTES = {"plan": "free", "country": "US", "age": 30, "beta": False, "email": "someone@corp.test"}
# (name, method path, weight): a client picks requests in this proportion, round robin.
MIX = [
    ("ofrep_flag", "/ofrep/v1/evaluate/flags/flag_07", 4),
    ("ofrep_bulk", "/ofrep/v1/evaluate/flags", 1),
    ("evaluate", "/api/v1/evaluate", 2),
    ("assign", "/api/v1/assign", 2),
    ("events", "/api/v1/events", 2),
]
EXPECTED = {"ofrep_flag": 200, "ofrep_bulk": 200, "evaluate": 200, "assign": 200, "events": 202}

COUNT_SCRIPT = """
import json
import django
django.setup()
from analytics import clickhouse
from analytics.ingestion.services import spool_drain, spool_depth
drained = spool_drain()
print(json.dumps({
    "events": clickhouse.query("SELECT count() AS n FROM events_dedup")[0]["n"],
    "events_stored": clickhouse.query("SELECT count() AS n FROM events")[0]["n"],
    "exposures": clickhouse.query("SELECT count() AS n FROM exposures_dedup")[0]["n"],
    "spool_drained_rows": drained.drained_rows,
    "spool_rows_left": spool_depth().rows,
}))
"""


def _body(name: str, unit: int) -> bytes:
    unit_id = f"user-{unit}"
    if name in ("ofrep_flag", "ofrep_bulk"):
        return json.dumps({"context": {"targetingKey": unit_id, **ATTRIBUTES}}).encode()
    if name == "evaluate":
        return json.dumps({"unit_id": unit_id, "attributes": ATTRIBUTES}).encode()
    if name == "assign":
        return json.dumps({"unit_id": unit_id, "attributes": ATTRIBUTES}).encode()
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "name": "purchase" if i % 3 == 0 else "page_view",
            "unit_id": f"user-{unit + i}",
            "value": float(i % 7) + 0.5,
            "properties": {"plan": "free"},
        }
        for i in range(EVENTS_PER_BATCH)
    ]
    return json.dumps({"events": events}).encode()


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.acknowledged = 0

    def record(self, name: str, seconds: float, status: int | None, payload: bytes, error: str = "") -> None:
        with self.lock:
            if status != EXPECTED[name]:
                self.errors.append(f"{name}: {error or status} {payload[:200]!r}")
                return
            self.latencies[name].append(seconds)
            if name == "events":
                self.acknowledged += json.loads(payload)["accepted"]


def _client(port: int, key: str, index: int, deadline: float, results: Results) -> None:
    schedule = [(name, path) for name, path, weight in MIX for _ in range(weight)]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    step = index  # clients start at different points of the mix
    while time.monotonic() < deadline:
        name, path = schedule[step % len(schedule)]
        body = _body(name, unit=index * 1_000_000 + step)
        step += 1
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            results.record(name, 0.0, None, b"", error=f"{type(exc).__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        results.record(name, time.perf_counter() - started, response.status, payload)
    connection.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_load__mixed_sdk_traffic__no_errors_and_every_acknowledged_event_stored():
    extra_env = {"SDK_RATE_LIMIT_PER_MINUTE": "100000000"}  # counted, never refused
    with BenchPlatform(threads=GUNICORN_THREADS, extra_env=extra_env) as platform:
        # Given a migrated platform with 50 flags, 5 running experiments and an SDK key
        setup = subprocess.run(
            [sys.executable, "-m", "bench.evaluate", "setup"],
            cwd=ROOT,
            env=platform.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert setup.returncode == 0, setup.stderr[-3000:]
        key = setup.stdout.strip().splitlines()[-1]
        platform.serve()

        # When clients send mixed traffic for LOAD_SECONDS
        results = Results()
        started = time.monotonic()
        deadline = started + LOAD_SECONDS
        threads = [
            threading.Thread(target=_client, args=(platform.port, key, i, deadline, results))
            for i in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=LOAD_SECONDS + 60)
        elapsed = time.monotonic() - started
        platform.stop()

        # Then the events acknowledged are the events stored (counted by another process)
        count = subprocess.run(
            [sys.executable, "-c", COUNT_SCRIPT],
            cwd=ROOT,
            env={**platform.env, "DJANGO_SETTINGS_MODULE": "config.settings"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert count.returncode == 0, count.stderr[-3000:]
        stored = json.loads(count.stdout.strip().splitlines()[-1])

    requests = sum(len(v) for v in results.latencies.values()) + len(results.errors)
    report = {
        "seconds": round(elapsed, 1),
        "clients": CLIENTS,
        "gunicorn": f"1 worker, {GUNICORN_THREADS} threads",
        "requests": requests,
        "requests_per_second": round(requests / elapsed, 1),
        "errors": len(results.errors),
        "events_acknowledged": results.acknowledged,
        "events_counted": stored["events"],
        "clickhouse": stored,
        "endpoints": {
            name: {
                "requests": len(values),
                "p50_ms": round(_percentile(values, 0.50) * 1000, 2),
                "p99_ms": round(_percentile(values, 0.99) * 1000, 2),
            }
            for name, values in sorted(results.latencies.items())
        },
    }
    write_artifact("load.json", report)
    print(f"\nload: {json.dumps(report, indent=2)}")

    assert not results.errors, f"{len(results.errors)} errors, first: {results.errors[:5]}"
    assert set(results.latencies) == set(EXPECTED), "every kind of request was served"
    assert results.acknowledged > 0
    assert stored["events"] == results.acknowledged
    assert stored["spool_rows_left"] == 0
