"""features.sdk.exposures: the buffer hands batches of rows to analytics.tasks.exposures_record.delay."""

import datetime as dt
import threading

import pytest
from kombu.exceptions import OperationalError

from features.sdk.exposures import ExposureBuffer, attribute_text


class FakeTask:
    """Stands in for analytics.tasks.exposures_record: records what `delay` receives."""

    def __init__(self, fail_with: list[BaseException] | None = None) -> None:
        self.batches: list[list[dict]] = []
        self.fail_with = list(fail_with or [])
        self.called = threading.Event()

    def delay(self, rows):
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.batches.append(rows)
        self.called.set()


@pytest.fixture
def task(monkeypatch) -> FakeTask:
    fake = FakeTask()
    monkeypatch.setattr("analytics.tasks.exposures_record", fake, raising=False)
    return fake


def manual(**options) -> ExposureBuffer:
    buffer = ExposureBuffer(**options)
    buffer.autostart = False
    return buffer


def add(buffer: ExposureBuffer, n: int, *, attributes=None, timestamp=1_800_000_000.5) -> None:
    for i in range(n):
        buffer.add(
            experiment="exp",
            variant="treatment",
            unit_id=f"user-{i}",
            environment="production",
            attributes=attributes,
            timestamp=timestamp,
        )


def test_flush__rows__handed_over_as_contract_dicts(task):
    buffer = manual()
    add(
        buffer,
        1,
        attributes={"country": "US", "age": 31, "beta": True, "tags": ["a"], "none": None, "r": 0.5},
    )
    assert buffer.flush() == 1
    assert task.batches == [
        [
            {
                "experiment": "exp",
                "variant": "treatment",
                "unit_id": "user-0",
                "timestamp": "2027-01-15T08:00:00.500000+00:00",
                "environment": "production",
                "attributes": {
                    "country": "US",
                    "age": "31",
                    "beta": "true",
                    "tags": '["a"]',
                    "none": "",
                    "r": "0.5",
                },
            }
        ]
    ]
    assert dt.datetime.fromisoformat(task.batches[0][0]["timestamp"]).timestamp() == 1_800_000_000.5
    assert buffer.flush() == 0 and len(task.batches) == 1


def test_flush__more_than_a_batch__several_task_calls(task):
    buffer = manual(batch_size=3)
    add(buffer, 7)
    assert buffer.flush() == 7
    assert [len(batch) for batch in task.batches] == [3, 3, 1]
    assert [row["unit_id"] for batch in task.batches for row in batch] == [f"user-{i}" for i in range(7)]


def test_flush__same_unit_repeated__handed_over_once_with_the_first_timestamp(task):
    buffer = manual()
    for timestamp, variant in [
        (1_800_000_002.0, "treatment"),
        (1_800_000_001.0, "treatment"),
        (1_800_000_003.0, "control"),
    ]:
        buffer.add(
            experiment="exp",
            variant=variant,
            unit_id="user-1",
            environment="production",
            attributes={},
            timestamp=timestamp,
        )
    assert buffer.flush() == 2
    assert [(r["variant"], r["timestamp"]) for r in task.batches[0]] == [
        ("treatment", "2027-01-15T08:00:01+00:00"),
        ("control", "2027-01-15T08:00:03+00:00"),
    ]


def test_flush__broker_down__rows_kept_for_the_next_flush(task):
    task.fail_with = [OperationalError("broker unreachable")]
    buffer = manual(batch_size=2)
    add(buffer, 3)
    assert buffer.flush() == 0
    assert len(buffer.pending()) == 3
    assert buffer.flush() == 3
    assert sum(len(b) for b in task.batches) == 3


def test_flush__batch_refused__dropped_and_the_rest_handed_over(task, caplog):
    task.fail_with = [ValueError("bad batch")]
    buffer = manual(batch_size=2)
    add(buffer, 3)
    assert buffer.flush() == 1
    assert buffer.pending() == []
    assert "Dropped a batch of 2 exposures" in caplog.text


def test_add__buffer_full__new_rows_counted_and_dropped(task):
    buffer = manual(max_pending=5)
    add(buffer, 8)
    assert len(buffer.pending()) == 5 and buffer.dropped == 3


def test_add__batch_full__background_thread_flushes_without_waiting_for_the_interval(task):
    buffer = ExposureBuffer(batch_size=2, interval=60.0)
    add(buffer, 2)
    assert task.called.wait(timeout=10), "the flusher thread did not hand the batch over"
    assert [row["unit_id"] for row in task.batches[0]] == ["user-0", "user-1"]


def test_add__interval__background_thread_flushes_a_partial_batch(task):
    buffer = ExposureBuffer(batch_size=1000, interval=0.05)
    add(buffer, 1)
    assert task.called.wait(timeout=10)
    assert len(task.batches[0]) == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("US", "US"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        (3, "3"),
        (0.25, "0.25"),
        (1.0, "1.0"),
        ({"b": 1, "a": [1]}, '{"a":[1],"b":1}'),
    ],
)
def test_attribute_text__json_values__strings(value, text):
    assert attribute_text(value) == text
