"""Concurrent writes share INSERTs (group commit), and each caller still learns where its rows went."""

import threading
import uuid

import pytest
from django.db import connections

from analytics import clickhouse as ch
from analytics.ingestion import services as ingestion
from analytics.ingestion.services import spool_depth

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _rows(writer: int, count: int) -> list[dict]:
    return [
        {"event_id": uuid.UUID(int=writer * 10_000 + i + 1), "name": "purchase", "unit_id": f"w{writer}-{i}"}
        for i in range(count)
    ]


def _write_concurrently(writers: int, count: int) -> list:
    results: list = [None] * writers
    start = threading.Barrier(writers)

    def write(index: int) -> None:
        start.wait()
        try:
            results[index] = ingestion.events_write(rows=_rows(index, count))
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            results[index] = exc
        finally:
            connections.close_all()  # this thread's own connection (spooling), or teardown waits on it

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_events_write__writers_arrive_during_an_insert__share_the_next_insert(clickhouse, monkeypatch):
    # Given the first INSERT holds until the seven other writers are queued behind it
    from analytics.clickhouse.backends import ChdbBackend

    group = ingestion._group_commits[ingestion.EVENTS.kind]
    original = ChdbBackend.insert
    inserts: list[int] = []

    def slow_first_insert(self, *args, **kwargs):
        if not inserts:
            for _ in range(500):
                with group.condition:
                    if len(group.pending) == 7:
                        break
                threading.Event().wait(0.01)
        inserts.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ChdbBackend, "insert", slow_first_insert)
    # When eight threads write 200 rows each
    results = _write_concurrently(8, 200)
    # Then two INSERTs stored everything: the first writer's, then the seven others' together
    assert len(inserts) == 2
    assert [(r.inserted, r.spooled) for r in results] == [(200, 0)] * 8
    assert ch.query("SELECT count() AS n FROM events_dedup")[0]["n"] == 1600


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_events_write__clickhouse_down_during_a_group__every_caller_spooled_then_drained(
    clickhouse, clickhouse_faults
):
    outage = clickhouse_faults.unavailable()
    results = _write_concurrently(6, 50)
    assert all(r.spooled == 50 and r.inserted == 0 for r in results), results
    assert spool_depth().rows == 300
    outage.stop()
    ingestion.clickhouse_breaker.reset()
    from django.utils import timezone

    from analytics.models import SpoolBatch

    SpoolBatch.objects.update(next_attempt_at=timezone.now())
    ingestion.spool_drain()
    assert spool_depth().rows == 0
    assert ch.query("SELECT count() AS n FROM events_dedup")[0]["n"] == 300
