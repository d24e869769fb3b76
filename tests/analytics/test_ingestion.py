"""The write path: events and exposures into ClickHouse, the spool when it is down, the drain."""

import datetime as dt
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from analytics import clickhouse as ch
from analytics import tasks
from analytics.clickhouse import client
from analytics.ingestion import services as ingestion
from analytics.models import SpoolBatch, SpoolKind

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def _events(count: int, *, prefix: str = "u", name: str = "purchase") -> list[ingestion.EventRow]:
    return [
        {
            "event_id": uuid.uuid4(),
            "name": name,
            "unit_id": f"{prefix}{index}",
            "value": float(index),
            "timestamp": T0 + dt.timedelta(seconds=index),
            "environment": "production",
            "properties": {"index": str(index)},
        }
        for index in range(count)
    ]


def _drained(batches: int, rows: int, failed: int, remaining: int) -> ingestion.DrainResult:
    return ingestion.DrainResult(
        drained_batches=batches, drained_rows=rows, failed_batches=failed, remaining_batches=remaining
    )


def _dedup_events() -> dict[uuid.UUID, float]:
    """What the analysis sees: each event_id with its value, through the dedup view."""
    rows = ch.query("SELECT event_id, value FROM events_dedup")
    assert len(rows) == len({row["event_id"] for row in rows})
    return {row["event_id"]: row["value"] for row in rows}


def test_events_write__clickhouse_up__inserts_every_row(clickhouse):
    rows = _events(250)

    result = ingestion.events_write(rows=rows, received_at=T0)

    assert result == ingestion.WriteResult(inserted=250, spooled=0)
    assert result.accepted == 250
    assert _dedup_events() == {row["event_id"]: row["value"] for row in rows}
    assert not SpoolBatch.objects.exists()


def test_events_write__defaults__fills_event_id_value_timestamp_and_received_at(clickhouse):
    ingestion.events_write(rows=[{"name": "signup", "unit_id": "u1"}], received_at=T0)

    [row] = ch.query("SELECT * FROM events")
    assert row["event_id"].version == 4
    assert row | {"event_id": None} == {
        "event_id": None,
        "name": "signup",
        "unit_id": "u1",
        "value": 1.0,
        "timestamp": T0,
        "received_at": T0,
        "environment": "",
        "properties": {},
    }


def test_events_write__event_id_as_text_and_naive_timestamp__stored_as_uuid_and_utc(clickhouse):
    event_id = uuid.uuid4()
    naive = dt.datetime(2024, 6, 1, 8, 30, 0, 250000)

    ingestion.events_write(
        rows=[{"name": "e", "unit_id": "u", "event_id": str(event_id), "timestamp": naive}]
    )

    assert ch.query("SELECT event_id, timestamp FROM events") == [
        {"event_id": event_id, "timestamp": naive.replace(tzinfo=dt.UTC)}
    ]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_events_write__non_finite_value__refused_before_storing_anything(clickhouse, value):
    rows = [*_events(3), {"name": "e", "unit_id": "u", "value": value}]

    with pytest.raises(ValueError, match="finite"):
        ingestion.events_write(rows=rows)

    assert clickhouse.count("events") == 0
    assert not SpoolBatch.objects.exists()


def test_events_write__replayed_batch__counts_once(clickhouse):
    # Given a batch stored twice (a client retry), the second time received later
    rows = _events(100)
    ingestion.events_write(rows=rows, received_at=T0)
    ingestion.events_write(rows=rows, received_at=T0 + dt.timedelta(minutes=5))

    # Then the analysis reads every event once, with its value
    seen = _dedup_events()
    assert seen == {row["event_id"]: row["value"] for row in rows}
    totals = ch.query(
        "SELECT count() AS n, sum(value) AS total FROM events_dedup WHERE name = {name:String}",
        {"name": "purchase"},
    )
    assert totals == [{"n": 100, "total": float(sum(range(100)))}]


def test_events_write__replay_with_a_server_defaulted_timestamp__counts_once(clickhouse):
    # A client that sends an event_id but no timestamp gets "now" each time it retries
    event = {"event_id": uuid.uuid4(), "name": "e", "unit_id": "u"}
    ingestion.events_write(rows=[event], received_at=T0)
    ingestion.events_write(rows=[event], received_at=T0 + dt.timedelta(seconds=30))

    assert ch.query("SELECT count() AS n FROM events_dedup") == [{"n": 1}]


def test_exposures_write__identical_exposure_twice__counts_once(clickhouse):
    exposure = {
        "experiment": "checkout",
        "variant": "treatment",
        "unit_id": "u1",
        "timestamp": T0,
        "environment": "production",
        "attributes": {"country": "DE", "age": 31, "beta": True, "tags": ["a", "b"], "none": None},
    }
    other = exposure | {"unit_id": "u2"}

    first = ingestion.exposures_write(rows=[exposure, other], received_at=T0)
    ingestion.exposures_write(rows=[exposure], received_at=T0 + dt.timedelta(minutes=1))

    assert first == ingestion.WriteResult(inserted=2, spooled=0)
    rows = ch.query("SELECT unit_id, attributes FROM exposures_dedup ORDER BY unit_id")
    assert [row["unit_id"] for row in rows] == ["u1", "u2"]
    assert rows[0]["attributes"] == {
        "country": "DE",
        "age": "31",
        "beta": "true",
        "tags": '["a","b"]',
        "none": "",
    }


def test_events_write__clickhouse_down_mid_ingest__every_acknowledged_row_lands_once_after_the_drain(
    clickhouse, clickhouse_faults
):
    # Given ClickHouse goes away after the third of ten batches
    batches = [_events(100, prefix=f"b{index}-") for index in range(10)]
    outage = clickhouse_faults.unavailable(after=3)

    # When the batches are written, every one is acknowledged
    results = [ingestion.events_write(rows=batch) for batch in batches]
    assert [r.accepted for r in results] == [100] * 10
    assert [r.spooled for r in results] == [0, 0, 0] + [100] * 7
    assert ingestion.spool_depth().rows == 700
    assert clickhouse.count("events") == 300

    # When ClickHouse is back and the drain task runs
    outage.stop()
    drained = tasks.spool_drain.delay().get()

    # Then every acknowledged row is in ClickHouse exactly once, and the spool is empty
    assert drained == {"drained_batches": 7, "drained_rows": 700, "failed_batches": 0, "remaining_batches": 0}
    assert _dedup_events() == {row["event_id"]: row["value"] for batch in batches for row in batch}
    assert clickhouse.count("events") == 1000
    assert ingestion.spool_depth() == ingestion.SpoolDepth(batches=0, rows=0, oldest=None)


@pytest.mark.parametrize("clickhouse", ["chdb"], indirect=True)
def test_events_write__embedded_engine_drops_an_insert_silently__spooled_then_drained(clickhouse):
    # Given the embedded engine refusing inserts the way it does not report: too many parts waiting
    # for merges (chDB answers "0 rows written" instead of raising TOO_MANY_PARTS), on a table with no
    # part yet (emptied here too: a part another test's late write left would refuse the first batch)
    ch.command("TRUNCATE TABLE events")
    ch.command("SYSTEM STOP MERGES events")
    ch.command("ALTER TABLE events MODIFY SETTING parts_to_throw_insert = 1, parts_to_delay_insert = 1")
    try:
        first, second = _events(20, prefix="a-"), _events(30, prefix="b-")
        # When two batches are written: the second finds one part already there
        results = [ingestion.events_write(rows=first), ingestion.events_write(rows=second)]
    finally:
        ch.command("ALTER TABLE events RESET SETTING parts_to_throw_insert, parts_to_delay_insert")
        ch.command("SYSTEM START MERGES events")
    # Then both were acknowledged: the first stored, the second spooled rather than lost
    assert [(r.inserted, r.spooled) for r in results] == [(20, 0), (0, 30)]
    assert clickhouse.count("events") == 20
    # And the drain brings the second in once ClickHouse takes inserts again
    ingestion.clickhouse_breaker.reset()
    ingestion.spool_drain()
    assert _dedup_events() == {row["event_id"]: row["value"] for row in first + second}


def test_events_write__reply_lost_after_the_insert__the_replay_counts_once(clickhouse, clickhouse_faults):
    # Given an insert that reaches ClickHouse but whose reply is lost (the caller sees a timeout)
    rows = _events(50)
    clickhouse_faults.unavailable(times=1, committed=True)

    # When the write spools the rows and the drain inserts them again
    result = ingestion.events_write(rows=rows)
    drained = ingestion.spool_drain()

    # Then the rows are stored twice, and read once
    assert result == ingestion.WriteResult(inserted=0, spooled=50)
    assert drained.drained_rows == 50
    assert clickhouse.count("events") in (50, 100)  # background merges may already have collapsed them
    assert _dedup_events() == {row["event_id"]: row["value"] for row in rows}


def test_exposures_write__clickhouse_down__spooled_then_drained(clickhouse, clickhouse_faults):
    outage = clickhouse_faults.unavailable()
    rows = [{"experiment": "x", "variant": v, "unit_id": f"u{v}", "timestamp": T0} for v in ("a", "b")]

    result = ingestion.exposures_write(rows=rows, received_at=T0)
    outage.stop()
    ingestion.spool_drain()

    assert result == ingestion.WriteResult(inserted=0, spooled=2)
    assert ch.query(
        "SELECT variant, unit_id, timestamp, received_at FROM exposures_dedup ORDER BY variant"
    ) == [
        {"variant": "a", "unit_id": "ua", "timestamp": T0, "received_at": T0},
        {"variant": "b", "unit_id": "ub", "timestamp": T0, "received_at": T0},
    ]


def _exposures_over_months(months: int) -> list[ingestion.ExposureRow]:
    """One exposure a month for ``months`` months back from T0, newest first."""
    return [
        {
            "experiment": "x",
            "variant": "a",
            "unit_id": f"u{month}",
            "timestamp": T0 - dt.timedelta(days=31 * month),
        }
        for month in range(months)
    ]


def _stored_exposure_units() -> set[str]:
    return {row["unit_id"] for row in ch.query("SELECT unit_id FROM exposures_dedup")}


def test_exposures_write__over_more_than_100_months__every_row_stored(clickhouse):
    # ClickHouse refuses an INSERT over more than max_partitions_per_insert_block (100) partitions by
    # default, and chDB dropped such a block without an error; the platform lifts the limit on inserts.
    rows = _exposures_over_months(250)

    result = ingestion.exposures_write(rows=rows, received_at=T0)

    assert result == ingestion.WriteResult(inserted=250, spooled=0)
    assert _stored_exposure_units() == {row["unit_id"] for row in rows}


def test_exposures_write__over_more_than_100_months_while_down__spooled_then_every_row_drained(
    clickhouse, clickhouse_faults
):
    outage = clickhouse_faults.unavailable()
    rows = _exposures_over_months(250)

    result = ingestion.exposures_write(rows=rows, received_at=T0)
    outage.stop()
    drained = ingestion.spool_drain()

    assert result == ingestion.WriteResult(inserted=0, spooled=250)
    assert drained.drained_rows == 250 and drained.remaining_batches == 0
    assert _stored_exposure_units() == {row["unit_id"] for row in rows}


def test_events_write__more_rows_than_a_spool_batch__spooled_in_several_batches(
    clickhouse, clickhouse_faults, monkeypatch
):
    monkeypatch.setattr(ingestion, "SPOOL_BATCH_ROWS", 40)
    clickhouse_faults.unavailable()

    ingestion.events_write(rows=_events(100))

    assert sorted(SpoolBatch.objects.values_list("row_count", flat=True)) == [20, 40, 40]
    assert ingestion.spool_depth().rows == 100


def test_spool_drain__clickhouse_still_down__keeps_the_rows_and_backs_off_per_batch(
    clickhouse, clickhouse_faults
):
    # Given two spooled batches and ClickHouse still down
    outage = clickhouse_faults.unavailable()
    first, second = _events(10, prefix="a"), _events(10, prefix="b")
    ingestion.events_write(rows=first)
    ingestion.events_write(rows=second)
    inserts_before = clickhouse_faults.calls["insert"]

    # When the drain runs: it tries the oldest batch once, and stops
    result = ingestion.spool_drain()
    after_first_run = {b.pk: b for b in SpoolBatch.objects.all()}

    # Then nothing is lost and the failed batch waits (exponential backoff) before its next attempt
    assert result == _drained(0, 0, 1, 2)
    assert clickhouse_faults.calls["insert"] == inserts_before + 1
    tried = [b for b in after_first_run.values() if b.attempts == 2]
    assert len(tried) == 1
    assert "fault injected" in tried[0].last_error
    assert tried[0].next_attempt_at >= timezone.now() + dt.timedelta(seconds=100)

    # When the drain runs twice more: the other batch is tried once, then nothing is due
    ingestion.spool_drain()
    third = ingestion.spool_drain()
    assert third.failed_batches == 0
    assert sorted(SpoolBatch.objects.values_list("attempts", flat=True)) == [2, 2]
    assert clickhouse_faults.calls["insert"] == inserts_before + 2

    # When ClickHouse is back and the batches are due again
    outage.stop()
    SpoolBatch.objects.update(next_attempt_at=timezone.now())
    result = ingestion.spool_drain()

    # Then the spool empties
    assert result == _drained(2, 20, 0, 0)
    assert _dedup_events() == {row["event_id"]: row["value"] for row in first + second}


def test_spool_drain__batch_clickhouse_refuses__backs_it_off_and_drains_the_others(clickhouse):
    # Given a batch ClickHouse will never take (a malformed row) queued before a good one
    now = timezone.now()
    bad = SpoolBatch.objects.create(
        kind=SpoolKind.EVENTS,
        payload=[["not-a-uuid"]],
        row_count=1,
        next_attempt_at=now - dt.timedelta(minutes=1),
    )
    good_row = ingestion.EVENTS.to_json(ingestion._event_tuple({"name": "e", "unit_id": "u"}, T0))
    SpoolBatch.objects.create(kind=SpoolKind.EVENTS, payload=[good_row], row_count=1, next_attempt_at=now)

    result = ingestion.spool_drain()

    assert result == _drained(1, 1, 1, 1)
    bad.refresh_from_db()
    assert bad.attempts == 1
    assert bad.last_error
    assert bad.next_attempt_at > timezone.now()
    assert clickhouse.count("events") == 1


@pytest.mark.parametrize(("attempts", "minutes"), [(1, 1), (2, 2), (3, 4), (4, 8), (5, 15), (12, 15)])
def test_spool_retry_delay__attempts__doubles_up_to_fifteen_minutes(attempts, minutes):
    assert ingestion.spool_retry_delay(attempts) == dt.timedelta(minutes=minutes)


def test_spool_depth__waiting_batches__counts_rows_and_the_oldest(clickhouse, clickhouse_faults):
    clickhouse_faults.unavailable()
    ingestion.events_write(rows=_events(7))
    ingestion.exposures_write(rows=[{"experiment": "x", "variant": "a", "unit_id": "u"}])
    oldest = SpoolBatch.objects.order_by("created_at").first().created_at

    assert ingestion.spool_depth() == ingestion.SpoolDepth(batches=2, rows=8, oldest=oldest)


def test_events_write__clickhouse_refuses_the_rows__raises_and_spools_nothing(clickhouse):
    # Given a ClickHouse that answers but refuses the insert (here: the table is not there)
    ch.command("RENAME TABLE events TO events_moved")
    client.forget_column_types()
    try:
        # When events are written, the error is not transient: the caller must not acknowledge
        with pytest.raises(ch.ClickHouseError) as caught:
            ingestion.events_write(rows=_events(2))
    finally:
        ch.command("RENAME TABLE events_moved TO events")
        client.forget_column_types()

    # Then it surfaces, and nothing is spooled
    assert not isinstance(caught.value, ch.ClickHouseUnavailable)
    assert not SpoolBatch.objects.exists()


def test_events_write__server_gone__spools_and_drains_once_it_is_back(
    clickhouse_schema, clickhouse_http_server, settings, closed_tcp_port
):
    # Given the HTTP backend pointed at a server that is not there (a real refused connection)
    settings.CLICKHOUSE_URL = f"http://default@127.0.0.1:{closed_tcp_port}/{clickhouse_schema}?compress=false"
    rows = _events(30, prefix="gone")

    result = ingestion.events_write(rows=rows)

    assert result == ingestion.WriteResult(inserted=0, spooled=30)
    assert "unreachable" in SpoolBatch.objects.get().last_error

    # When the server is reachable again
    settings.CLICKHOUSE_URL = clickhouse_http_server.url(clickhouse_schema)
    ingestion.spool_drain()

    ids = {row["event_id"] for row in rows}
    stored = ch.query("SELECT event_id FROM events_dedup WHERE unit_id LIKE 'gone%'")
    assert {row["event_id"] for row in stored} == ids
    ch.command("TRUNCATE TABLE events")


def test_spool_drain_schedule__migrated__runs_the_task_every_minute():
    task = PeriodicTask.objects.get(task="analytics.tasks.spool_drain")

    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_spool_drain__batch_locked_by_another_drain__skips_it(clickhouse):
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("the database has no SELECT ... FOR UPDATE SKIP LOCKED (SQLite)")
    # Given two due batches, the first one held by another drain (another connection)
    first, second = (
        SpoolBatch.objects.create(
            kind=SpoolKind.EVENTS,
            payload=[ingestion.EVENTS.to_json(ingestion._event_tuple({"name": "e", "unit_id": unit}, T0))],
            row_count=1,
            next_attempt_at=timezone.now() - dt.timedelta(seconds=seconds),
        )
        for unit, seconds in (("first", 10), ("second", 5))
    )
    locked, release = threading.Event(), threading.Event()

    def other_drain() -> None:
        try:
            with transaction.atomic():
                SpoolBatch.objects.select_for_update().get(pk=first.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=other_drain)
    holder.start()
    assert locked.wait(timeout=30)

    # When this drain runs
    try:
        result = ingestion.spool_drain()
    finally:
        release.set()
        holder.join(timeout=30)

    # Then it takes the free batch and leaves the held one alone
    assert (result.drained_batches, result.failed_batches) == (1, 0)
    assert list(SpoolBatch.objects.values_list("pk", flat=True)) == [first.pk]
    assert ch.query("SELECT unit_id FROM events") == [{"unit_id": "second"}]


def test_events_write__right_after_clickhouse_was_unreachable__spools_without_waiting_on_it(
    clickhouse, clickhouse_faults
):
    # Given a write that found ClickHouse unreachable
    outage = clickhouse_faults.unavailable()
    ingestion.events_write(rows=_events(5, prefix="a"))
    inserts = clickhouse_faults.calls["insert"]

    # When more rows come within the cool-down, they are spooled without another attempt
    result = ingestion.events_write(rows=_events(5, prefix="b"))
    assert result == ingestion.WriteResult(inserted=0, spooled=5)
    assert clickhouse_faults.calls["insert"] == inserts

    # When ClickHouse is back, the drain's first success lets writes go straight in again
    outage.stop()
    ingestion.spool_drain()
    assert ingestion.events_write(rows=_events(5, prefix="c")) == ingestion.WriteResult(inserted=5, spooled=0)
    assert clickhouse.count("events") == 15
