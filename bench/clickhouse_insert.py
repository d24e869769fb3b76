"""Insert throughput through the ClickHouse entry point, on both backends.

    python bench/clickhouse_insert.py [--rounds N]

Measures rows/s of ``analytics.clickhouse.insert`` into ``events`` for batches of 500 and 100,000 rows,
embedded (chDB) and over HTTP (clickhouse-connect against the test suite's HTTP interface, which
runs on the same embedded engine, so it adds the HTTP round trip and both Native codecs), and of
``analytics.ingestion.services.events_write`` for API-sized requests of 1,000 events (validation-free rows to
stored rows, end to end). Uses a throw-away data directory; never touches var/chdb.
"""

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per case (median reported)")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    from analytics import clickhouse as ch
    from analytics.clickhouse import migrations
    from analytics.clickhouse.embedded import close_engine, get_engine
    from analytics.ingestion import services as ingestion
    from tests.support.clickhouse_http import ClickHouseHTTPServer

    with tempfile.TemporaryDirectory(prefix="bench-chdb-") as data_dir:
        settings.CLICKHOUSE_DATA_DIR, settings.CLICKHOUSE_URL = data_dir, ""
        ch.reset()
        migrations.migrate()
        database = ch.database_name()
        server = ClickHouseHTTPServer(get_engine(data_dir)).start()
        now = dt.datetime.now(dt.UTC)
        columns = list(ingestion.EVENTS.columns)

        def rows(count: int) -> list[tuple]:
            return [
                (
                    uuid.uuid4(),
                    "purchase",
                    f"user-{i}",
                    i * 0.5,
                    now,
                    now,
                    "production",
                    {"plan": "pro", "n": str(i)},
                )
                for i in range(count)
            ]

        def measure(label: str, count: int, action) -> None:
            """Median time of ``action()`` (which stores ``count`` prepared rows)."""
            action()  # warm-up
            timings = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                action()
                timings.append(time.perf_counter() - started)
            median = statistics.median(timings)
            print(f"{label:<44} {count:>8,} rows  {median * 1000:>9.1f} ms  {count / median:>12,.0f} rows/s")

        try:
            for backend in ("chdb", "http"):
                settings.CLICKHOUSE_URL = server.url(database) if backend == "http" else ""
                for count in (500, 100_000):
                    batch = rows(count)
                    measure(
                        f"insert, {backend}", count, lambda batch=batch: ch.insert("events", batch, columns)
                    )
                    ch.command("TRUNCATE TABLE events")
                request = [
                    {"event_id": uuid.uuid4(), "name": "purchase", "unit_id": f"u{i}", "value": 2.5,
                     "timestamp": now, "environment": "production", "properties": {"plan": "pro"}}
                    for i in range(1_000)
                ]  # fmt: skip
                measure(f"events_write, {backend}", 1_000, partial(ingestion.events_write, rows=request))
                ch.command("TRUNCATE TABLE events")
        finally:
            server.stop()
            ch.reset()
            close_engine()  # before the directory goes


if __name__ == "__main__":
    main()
