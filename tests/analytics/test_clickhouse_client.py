"""The ClickHouse entry point, on both backends (embedded chDB, and clickhouse-connect over HTTP)."""

import datetime as dt
import fcntl
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from analytics import clickhouse as ch
from analytics.clickhouse.embedded import EmbeddedEngine
from analytics.clickhouse.params import prepare
from analytics.ingestion import services as ingestion

EVENT_COLUMNS = list(ingestion.EVENTS.columns)
EXPOSURE_COLUMNS = list(ingestion.EXPOSURES.columns)
RECEIVED = dt.datetime(2024, 3, 1, 12, 0, 0, 1000, tzinfo=dt.UTC)


def test_ping__any_backend__returns_the_server_version(clickhouse):
    version = ch.ping()

    assert version.split(".")[0].isdigit()


@pytest.mark.parametrize(
    ("placeholder", "value", "expected"),
    [
        ("String", "plain", "plain"),
        ("String", 'it\'s a "quote"', 'it\'s a "quote"'),
        ("String", "back\\slash \\n not a newline", "back\\slash \\n not a newline"),
        ("String", "tab\tand\nnewline", "tab\tand\nnewline"),
        ("String", "ünïcødé ✓ 購入 🎉", "ünïcødé ✓ 購入 🎉"),
        ("String", "", ""),
        ("Int64", -9_223_372_036_854_775_808, -9_223_372_036_854_775_808),
        ("UInt64", 18_446_744_073_709_551_615, 18_446_744_073_709_551_615),
        ("Float64", -1.5e-300, -1.5e-300),
        ("Float64", 0.1, 0.1),
        ("Bool", True, True),
        ("UInt8", True, 1),
        ("Nullable(String)", None, None),
        ("UUID", uuid.UUID(int=12345), uuid.UUID(int=12345)),
        (
            "DateTime64(3, 'UTC')",
            dt.datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=dt.UTC),
            dt.datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=dt.UTC),
        ),
        (
            "DateTime('UTC')",
            dt.datetime(2024, 1, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            dt.datetime(2024, 1, 1, 0, 0, 0, tzinfo=dt.UTC),
        ),
        ("Date", dt.date(2024, 1, 31), dt.date(2024, 1, 31)),
        ("Map(String, String)", {"k'ey": "va\\lue", "ü": ""}, {"k'ey": "va\\lue", "ü": ""}),
        ("Array(String)", ["a", "b'c", ""], ["a", "b'c", ""]),
        ("Array(UUID)", [uuid.UUID(int=1), uuid.UUID(int=2)], [uuid.UUID(int=1), uuid.UUID(int=2)]),
    ],
)
def test_query__bound_parameter__round_trips_its_value(clickhouse, placeholder, value, expected):
    rows = ch.query(f"SELECT {{value:{placeholder}}} AS value", {"value": value})

    assert rows == [{"value": expected}]


def test_query__parameter_without_placeholder__is_refused_before_sending(clickhouse):
    # A parameter with no {name:Type} placeholder would make clickhouse-connect format it client-side.
    with pytest.raises(ValueError, match="no {name:Type} placeholder"):
        ch.query("SELECT 1 AS one WHERE 1 = %(name)s", {"name": "x"})


def test_query__placeholder_without_parameter__is_refused_before_sending(clickhouse):
    with pytest.raises(ValueError, match="without a value: name"):
        ch.query("SELECT {name:String} AS name")


def test_query__unknown_table__raises_clickhouse_error_with_its_code(clickhouse):
    with pytest.raises(ch.ClickHouseError) as caught:
        ch.query("SELECT * FROM no_such_table")

    assert caught.value.code == 60  # UNKNOWN_TABLE
    assert not isinstance(caught.value, ch.ClickHouseUnavailable)
    assert "no_such_table" in str(caught.value)


def test_query__settings__apply_to_the_statement_only(clickhouse):
    rows = ch.query("SELECT getSetting('max_block_size') AS value", settings={"max_block_size": 1234})
    after = ch.query("SELECT getSetting('max_block_size') AS value")

    assert rows[0]["value"] == 1234
    assert after[0]["value"] != 1234


def test_query__value_with_sql_injection__round_trips_literally(clickhouse):
    # Given an event whose fields carry SQL
    evil = "x'); DROP TABLE events; --"
    row = (uuid.uuid4(), evil, "u' OR '1'='1", 1.0, RECEIVED, RECEIVED, "production", {evil: evil})
    ch.insert("events", [row], EVENT_COLUMNS)

    # When it is looked up by a bound parameter holding the same text
    rows = ch.query("SELECT name, unit_id, properties FROM events WHERE name = {name:String}", {"name": evil})
    no_match = ch.query("SELECT count() AS n FROM events WHERE unit_id = {unit_id:String}", {"unit_id": "u"})

    # Then the text is a value, nothing ran, and the table is still there
    assert rows == [{"name": evil, "unit_id": "u' OR '1'='1", "properties": {evil: evil}}]
    assert no_match == [{"n": 0}]
    assert ch.query("SELECT count() AS n FROM events") == [{"n": 1}]


def test_insert__events_every_column__round_trips(clickhouse):
    # Given events with unicode, maps, millisecond timestamps and extreme values
    values = [1e300, -1e-300, -42.5, 0.1, 9_007_199_254_740_993.0, 0.0]
    rows = [
        (
            uuid.UUID(int=index + 1),
            "checkout ✓ 購入",
            f"user-ü-{index}",
            value,
            dt.datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=dt.UTC) - dt.timedelta(milliseconds=index),
            RECEIVED,
            "production",
            {"plan": "pro", "emoji": "🎉", "quote": 'it\'s "q"', "": "empty key", "index": str(index)},
        )
        for index, value in enumerate(values)
    ]

    # When they are inserted and read back
    written = ch.insert("events", rows, EVENT_COLUMNS)
    read = ch.query(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events ORDER BY event_id")

    # Then every column comes back as it went in
    assert written == len(rows)
    assert read == [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows]


def test_insert__timestamp_with_microseconds__keeps_milliseconds(clickhouse):
    stamp = dt.datetime(2024, 5, 6, 7, 8, 9, 123999, tzinfo=dt.UTC)
    row = (uuid.uuid4(), "e", "u", 1.0, stamp, stamp, "", {})

    ch.insert("events", [row], EVENT_COLUMNS)

    assert ch.query("SELECT timestamp FROM events") == [{"timestamp": stamp.replace(microsecond=123000)}]


def test_insert__exposures_every_column__round_trips(clickhouse):
    rows = [
        (
            "checkout-flow ✓",
            variant,
            "unit/ü 1",
            dt.datetime(2023, 12, 31, 23, 59, 59, 1000, tzinfo=dt.UTC),
            RECEIVED,
            "staging",
            {"country": "DE", "plan": "pro", "note": "a'b\\c"},
        )
        for variant in ("control", "treatment")
    ]

    ch.insert("exposures", rows, EXPOSURE_COLUMNS)
    read = ch.query(f"SELECT {', '.join(EXPOSURE_COLUMNS)} FROM exposures ORDER BY variant")

    assert read == [dict(zip(EXPOSURE_COLUMNS, row, strict=True)) for row in rows]


def test_insert__many_rows__one_call(clickhouse):
    rows = [(uuid.uuid4(), "e", f"u{i}", float(i), RECEIVED, RECEIVED, "", {}) for i in range(20_000)]

    ch.insert("events", rows, EVENT_COLUMNS)

    assert ch.query("SELECT count() AS n, sum(value) AS total FROM events") == [
        {"n": 20_000, "total": float(sum(range(20_000)))}
    ]


def test_insert__unknown_column__raises_clickhouse_error(clickhouse):
    with pytest.raises(ch.ClickHouseError, match="no column nope"):
        ch.insert("events", [(1,)], ["nope"])


@pytest.mark.parametrize("table", ["events; DROP TABLE events", "a.b.c", "`events`", ""])
def test_insert__table_name_not_an_identifier__is_refused(clickhouse, table):
    with pytest.raises((ValueError, ch.ClickHouseError)):
        ch.insert(table, [(uuid.uuid4(),)], ["event_id"])

    assert ch.query("SELECT count() AS n FROM events") == [{"n": 0}]


def test_insert__value_of_the_wrong_type__raises_clickhouse_error(clickhouse):
    with pytest.raises(ch.ClickHouseError):
        ch.insert("events", [("not-a-uuid", "e", "u", "x", None, None, "", {})], EVENT_COLUMNS)


def test_prepare__naive_datetime__is_taken_as_utc():
    prepared = prepare("SELECT {t:DateTime64(3)}", {"t": dt.datetime(2024, 1, 1, 0, 0, 0, 5000)})

    assert prepared == {"t": "2024-01-01 00:00:00.005000"}


def test_backend__server_not_listening__raises_unavailable(settings, closed_tcp_port):
    settings.CLICKHOUSE_URL = f"http://default@127.0.0.1:{closed_tcp_port}/experiments?compress=false"

    with pytest.raises(ch.ClickHouseUnavailable, match="unreachable"):
        ch.ping()


def test_embedded__data_dir_owned_by_another_process__raises_unavailable_saying_so(tmp_path):
    # Given a data directory whose lock (ClickHouse flocks its "status" file) is held elsewhere;
    # flock locks belong to an open file, so a second open in this process sees it held
    status = os.open(tmp_path / "status", os.O_RDWR | os.O_CREAT)
    fcntl.flock(status, fcntl.LOCK_EX)
    try:
        # When the embedded engine is asked to open it
        with pytest.raises(ch.ClickHouseUnavailable) as caught:
            EmbeddedEngine(tmp_path).execute("SELECT 1", timeout=1)
    finally:
        os.close(status)

    # Then it refuses before touching chDB, with a message that says what to do
    assert "is in use by another process" in str(caught.value)
    assert "set CLICKHOUSE_URL" in str(caught.value)


def test_entry_point__many_threads_at_once__every_call_succeeds(clickhouse):
    # One engine (or one HTTP client) is shared by every thread of the process
    def work(worker: int) -> int:
        for _ in range(5):
            rows = [(uuid.uuid4(), "e", f"w{worker}", 1.0, RECEIVED, RECEIVED, "", {}) for _ in range(100)]
            ch.insert("events", rows, EVENT_COLUMNS)
            ch.query("SELECT count() AS n FROM events WHERE unit_id = {u:String}", {"u": f"w{worker}"})
        return ch.query("SELECT count() AS n FROM events WHERE unit_id = {u:String}", {"u": f"w{worker}"})[0][
            "n"
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(work, range(8)))

    assert counts == [500] * 8


def test_query__statement_without_rows__returns_no_rows_on_every_backend(clickhouse):
    assert ch.query("TRUNCATE TABLE events") == []


def test_query__runs_past_the_query_timeout__raises_unavailable(clickhouse, settings):
    settings.CLICKHOUSE_QUERY_TIMEOUT = 1

    with pytest.raises(ch.ClickHouseUnavailable):
        ch.query("SELECT sleepEachRow(0.1) FROM numbers(40)", settings={"max_block_size": 1})

    settings.CLICKHOUSE_QUERY_TIMEOUT = 60
    assert ch.query("SELECT 1 AS one") == [{"one": 1}]
