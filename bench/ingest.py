"""Ingestion: events/s through the HTTP API against direct inserts of the same rows, same run.

The API path is the whole thing an SDK sees: gunicorn, SDK-key auth, JSON parsing, per-item
validation, the durable write. The baseline inserts the same rows, in the same batch size, straight
through the ClickHouse entry point (`analytics.clickhouse.insert`) in one process.
"""

import datetime as dt
import http.client
import json
import os
import threading
import time
import uuid

from bench.common import Result
from bench.server import BenchPlatform

BATCH = 500
SECONDS = float(os.environ.get("BENCH_INGEST_SECONDS", "10"))
CLIENT_THREADS = int(os.environ.get("BENCH_INGEST_CLIENTS", "8"))


def _batches(count: int) -> list[list[dict]]:
    now = dt.datetime.now(dt.UTC)
    batches = []
    for b in range(count):
        batches.append(
            [
                {
                    "event_id": str(uuid.uuid4()),
                    "name": ("purchase", "page_view", "signup")[i % 3],
                    "unit_id": f"user-{(b * BATCH + i) % 200_000}",
                    "value": float(i % 50) + 0.5,
                    "timestamp": (now - dt.timedelta(seconds=i)).isoformat(),
                    "properties": {"plan": "pro" if i % 4 else "free", "country": "DE"},
                }
                for i in range(BATCH)
            ]
        )
    return batches


def _api_load(platform: BenchPlatform, key: str, bodies: list[bytes]) -> tuple[int, float, int]:
    acknowledged = 0
    errors = 0
    lock = threading.Lock()
    next_body = iter(range(len(bodies)))
    deadline = time.monotonic() + SECONDS

    def client() -> None:
        nonlocal acknowledged, errors
        connection = http.client.HTTPConnection("127.0.0.1", platform.port, timeout=30)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        while time.monotonic() < deadline:
            with lock:
                index = next(next_body, None)
            if index is None:
                return
            connection.request("POST", "/api/v1/events", body=bodies[index], headers=headers)
            response = connection.getresponse()
            payload = response.read()
            with lock:
                if response.status == 202:
                    acknowledged += json.loads(payload)["accepted"]
                else:
                    errors += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acknowledged, time.perf_counter() - started, errors


def _direct_inserts(platform: BenchPlatform, batches: list[list[dict]]) -> tuple[int, float, int]:
    """In this process, after gunicorn released the embedded engine."""
    os.environ["PLATFORM_VAR_DIR"] = platform.env["PLATFORM_VAR_DIR"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    from analytics import clickhouse
    from analytics.ingestion.services import EVENTS

    settings.CLICKHOUSE_DATA_DIR = str(platform.var / "chdb")
    clickhouse.reset()
    stored_by_api = clickhouse.query("SELECT count() AS n FROM events_dedup")[0]["n"]
    received = dt.datetime.now(dt.UTC)
    rows = [
        [
            (
                uuid.uuid4(),
                e["name"],
                e["unit_id"],
                e["value"],
                dt.datetime.fromisoformat(e["timestamp"]),
                received,
                "production",
                e["properties"],
            )
            for e in batch
        ]
        for batch in batches
    ]
    inserted = 0
    started = time.perf_counter()
    deadline = time.monotonic() + SECONDS
    for batch in rows:
        clickhouse.insert("events", batch, EVENTS.columns)
        inserted += len(batch)
        if time.monotonic() > deadline:
            break
    return inserted, time.perf_counter() - started, stored_by_api


def run() -> list[Result]:
    batches = _batches(int(SECONDS * 120) + 20)
    bodies = [json.dumps({"events": batch}).encode() for batch in batches]
    with BenchPlatform(threads=int(os.environ.get("BENCH_INGEST_THREADS", "8"))) as platform:
        key = platform.manage("create_sdk_key", "production").strip().splitlines()[-1]
        platform.serve()
        acknowledged, api_seconds, errors = _api_load(platform, key, bodies)
        platform.stop()
        inserted, direct_seconds, stored = _direct_inserts(platform, batches)
    api_rate = acknowledged / api_seconds
    direct_rate = inserted / direct_seconds
    print(
        f"API: {acknowledged:,} events acknowledged in {api_seconds:.1f} s = {api_rate:,.0f} events/s "
        f"({errors} errors; {stored:,} stored in ClickHouse)\n"
        f"direct inserts: {inserted:,} rows in {direct_seconds:.1f} s = {direct_rate:,.0f} rows/s "
        f"(batches of {BATCH})"
    )
    if stored != acknowledged:
        print(f"WARNING: {acknowledged - stored} acknowledged events are not in ClickHouse")
    return [
        Result(
            entry="ingest",
            measured=f"HTTP API, batches of {BATCH}, gunicorn 1 worker, {CLIENT_THREADS} clients",
            value=api_rate,
            baseline=f"direct inserts, batches of {BATCH}",
            baseline_value=direct_rate,
            unit="events/s",
            goal="≥ 20,000 events/s and ratio ≥ 0.5",
        )
    ]
