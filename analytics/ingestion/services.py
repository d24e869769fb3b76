"""Writing events and exposures: batched inserts into ClickHouse, a durable spool when it is down.

The HTTP endpoints and the assignment/flag path call ``events_write`` / ``exposures_write`` with rows
they have already validated. A call returns only once every row is in ClickHouse or in the spool
(``SpoolBatch``, in PostgreSQL), so the caller can acknowledge (202) whatever the call returns; if the
spool cannot be written either, the exception propagates and nothing may be acknowledged.

``spool_drain`` (run every minute by ``analytics.tasks.spool_drain``) inserts spooled batches, each
with its own exponential backoff, and deletes a batch only after its insert succeeded. A crash between
the insert and the delete replays the batch; that doubles nothing, because readers deduplicate by
event_id (and identical exposures) through the ``*_dedup`` views.
"""

import datetime as dt
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from django.db import transaction
from django.db.models import Count, Min, Sum
from django.utils import timezone

from analytics import clickhouse
from analytics.clickhouse import ClickHouseError, ClickHouseUnavailable
from analytics.models import SpoolBatch, SpoolKind

logger = logging.getLogger(__name__)

INSERT_BATCH_ROWS = 50_000  # rows per INSERT: one ClickHouse part each, so big batches, few parts
SPOOL_BATCH_ROWS = 5_000  # rows per spooled batch (one JSON document each)
SPOOL_RETRY_BASE = dt.timedelta(minutes=1)  # the drain runs every minute
SPOOL_RETRY_MAX = dt.timedelta(minutes=15)
UNREACHABLE_COOLDOWN_SECONDS = 5.0  # after a failed insert, writes spool at once for this long


class EventRow(TypedDict):
    """A validated metric event (the ``/api/v1/events`` item)."""

    name: str
    unit_id: str
    event_id: NotRequired[uuid.UUID | str | None]  # a uuid4 is generated when missing
    value: NotRequired[float | None]  # default 1
    timestamp: NotRequired[dt.datetime | None]  # default: when received; naive = UTC
    environment: NotRequired[str]
    properties: NotRequired[Mapping[str, str] | None]


class ExposureRow(TypedDict):
    """A validated exposure: ``unit_id`` was shown ``variant`` of ``experiment``."""

    experiment: str
    variant: str
    unit_id: str
    timestamp: NotRequired[dt.datetime | None]  # default: when received; naive = UTC
    environment: NotRequired[str]
    attributes: NotRequired[Mapping[str, Any] | None]  # stored as strings (JSON for non-scalars)


@dataclass(frozen=True)
class WriteResult:
    """Where the rows of one write went; all of them are accepted either way."""

    inserted: int
    spooled: int

    @property
    def accepted(self) -> int:
        return self.inserted + self.spooled


@dataclass(frozen=True)
class DrainResult:
    drained_batches: int
    drained_rows: int
    failed_batches: int
    remaining_batches: int


@dataclass(frozen=True)
class SpoolDepth:
    batches: int
    rows: int
    oldest: dt.datetime | None  # when the oldest waiting rows were accepted


# --- rows ---------------------------------------------------------------------------------------------
def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is dt.UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _attribute_text(value: Any) -> str:
    import json

    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _string_map(values: Mapping[Any, Any] | None) -> dict[str, str]:
    if not values:
        return {}
    if all(type(key) is str and type(value) is str for key, value in values.items()):
        return values if type(values) is dict else dict(values)
    return {str(key): _attribute_text(value) for key, value in (values or {}).items()}


def _event_tuple(row: EventRow, received_at: dt.datetime) -> tuple:
    event_id = row.get("event_id")
    if event_id is None:
        event_id = uuid.uuid4()
    elif not isinstance(event_id, uuid.UUID):
        event_id = uuid.UUID(str(event_id))
    value = row.get("value")
    value = 1.0 if value is None else float(value)
    if not math.isfinite(value):
        raise ValueError(f"Event values must be finite numbers, got {value!r}.")
    timestamp = row.get("timestamp")
    return (
        event_id,
        str(row["name"]),
        str(row["unit_id"]),
        value,
        received_at if timestamp is None else _utc(timestamp),
        received_at,
        str(row.get("environment") or ""),
        _string_map(row.get("properties")),
    )


def _exposure_tuple(row: ExposureRow, received_at: dt.datetime) -> tuple:
    timestamp = row.get("timestamp")
    return (
        str(row["experiment"]),
        str(row["variant"]),
        str(row["unit_id"]),
        received_at if timestamp is None else _utc(timestamp),
        received_at,
        str(row.get("environment") or ""),
        _string_map(row.get("attributes")),
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@dataclass(frozen=True)
class _Table:
    """A ClickHouse table the write path fills, and how its rows travel through the spool."""

    kind: SpoolKind
    name: str
    columns: tuple[str, ...]
    from_json: Callable[[Sequence[Any]], tuple]

    def to_json(self, row: tuple) -> list[Any]:
        return [_json_value(value) for value in row]


EVENTS = _Table(
    kind=SpoolKind.EVENTS,
    name="events",
    columns=("event_id", "name", "unit_id", "value", "timestamp", "received_at", "environment", "properties"),
    from_json=lambda r: (
        uuid.UUID(r[0]),
        r[1],
        r[2],
        float(r[3]),
        dt.datetime.fromisoformat(r[4]),
        dt.datetime.fromisoformat(r[5]),
        r[6],
        dict(r[7]),
    ),
)
EXPOSURES = _Table(
    kind=SpoolKind.EXPOSURES,
    name="exposures",
    columns=("experiment", "variant", "unit_id", "timestamp", "received_at", "environment", "attributes"),
    from_json=lambda r: (
        r[0],
        r[1],
        r[2],
        dt.datetime.fromisoformat(r[3]),
        dt.datetime.fromisoformat(r[4]),
        r[5],
        dict(r[6]),
    ),
)
_TABLES = {table.kind: table for table in (EVENTS, EXPOSURES)}


# --- writes -------------------------------------------------------------------------------------------
class _CircuitBreaker:
    """Spool at once for a few seconds after ClickHouse was found unreachable.

    A ClickHouse that does not answer (rather than refusing) costs each insert the connect timeout;
    without this every request would wait that long before its rows are spooled. The drain keeps
    trying ClickHouse meanwhile, and its first successful insert closes the breaker.
    """

    def __init__(self) -> None:
        self._open_until = 0.0

    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def trip(self) -> None:
        self._open_until = time.monotonic() + UNREACHABLE_COOLDOWN_SECONDS

    def reset(self) -> None:
        self._open_until = 0.0


clickhouse_breaker = _CircuitBreaker()


def _spool(table: _Table, rows: Sequence[tuple], *, error: str) -> int:
    """Write ``rows`` to the spool in one transaction; the number of rows spooled."""
    now = timezone.now()
    batches = [
        SpoolBatch(
            kind=table.kind,
            payload=[table.to_json(row) for row in rows[start : start + SPOOL_BATCH_ROWS]],
            row_count=len(rows[start : start + SPOOL_BATCH_ROWS]),
            created_at=now,
            attempts=1,  # the insert that just failed
            last_error=error[:2000],
            next_attempt_at=now,
        )
        for start in range(0, len(rows), SPOOL_BATCH_ROWS)
    ]
    with transaction.atomic():
        SpoolBatch.objects.bulk_create(batches)
    return len(rows)


def _write(table: _Table, rows: Sequence[tuple]) -> WriteResult:
    if clickhouse_breaker.is_open():
        error = "ClickHouse was unreachable moments ago; spooled without trying again"
        return WriteResult(inserted=0, spooled=_spool(table, rows, error=error))
    inserted = 0
    for start in range(0, len(rows), INSERT_BATCH_ROWS):
        chunk = rows[start : start + INSERT_BATCH_ROWS]
        try:
            clickhouse.insert(table.name, chunk, table.columns)
        except ClickHouseUnavailable as exc:
            clickhouse_breaker.trip()
            remaining = rows[start:]
            logger.warning("ClickHouse unavailable; spooling %d %s rows: %s", len(remaining), table.name, exc)
            return WriteResult(inserted=inserted, spooled=_spool(table, remaining, error=str(exc)))
        inserted += len(chunk)
    return WriteResult(inserted=inserted, spooled=0)


@dataclass
class _Participant:
    rows: Sequence[tuple]
    finished: bool = False
    result: WriteResult | None = None
    error: BaseException | None = None


class _GroupCommit:
    """Concurrent writers of one table share an INSERT (group commit).

    Every INSERT costs ClickHouse a part and the embedded engine a fixed ~10 ms whatever its size, so
    while one INSERT runs, the requests that arrive queue up and the next leader writes all of them
    at once. Each caller still returns only when its own rows are stored (inserted or spooled). A
    group is far smaller than INSERT_BATCH_ROWS, so it is one INSERT: all of it lands or none does.
    """

    def __init__(self, table: _Table) -> None:
        self.table = table
        self.condition = threading.Condition()
        self.pending: list[_Participant] = []
        self.busy = False

    def write(self, rows: Sequence[tuple]) -> WriteResult:
        me = _Participant(rows)
        with self.condition:
            self.pending.append(me)
            while self.busy and not me.finished:
                self.condition.wait()
            if not me.finished:
                self.busy = True
                group, self.pending = self.pending, []
        if not me.finished:
            try:
                self._commit(group)
            finally:
                with self.condition:
                    self.busy = False
                    self.condition.notify_all()
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result

    def _commit(self, group: list[_Participant]) -> None:
        combined = [row for participant in group for row in participant.rows]
        try:
            result = _write(self.table, combined)
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the group, each re-raises it
            for participant in group:
                participant.error, participant.finished = exc, True
            return
        offset = 0
        for participant in group:
            count = len(participant.rows)
            inserted = min(max(result.inserted - offset, 0), count)
            participant.result = WriteResult(inserted=inserted, spooled=count - inserted)
            participant.finished = True
            offset += count


_group_commits = {EVENTS.kind: _GroupCommit(EVENTS), EXPOSURES.kind: _GroupCommit(EXPOSURES)}


def events_write(*, rows: Iterable[EventRow], received_at: dt.datetime | None = None) -> WriteResult:
    """Store validated events: inserted into ClickHouse, or spooled if it is unreachable.

    Returns once every row is stored one way or the other. Raises ``ValueError`` for a row that is
    not valid (a malformed event_id, a non-finite value) before storing anything, ``ClickHouseError``
    when ClickHouse refuses the rows (not transient: nothing is spooled), and database errors when the
    spool cannot be written.
    """
    received_at = _utc(received_at or timezone.now())
    return _group_commits[EVENTS.kind].write([_event_tuple(row, received_at) for row in rows])


def exposures_write(*, rows: Iterable[ExposureRow], received_at: dt.datetime | None = None) -> WriteResult:
    """Store validated exposures; as ``events_write``."""
    received_at = _utc(received_at or timezone.now())
    return _group_commits[EXPOSURES.kind].write([_exposure_tuple(row, received_at) for row in rows])


# --- the spool drain ------------------------------------------------------------------------------------
def spool_retry_delay(attempts: int) -> dt.timedelta:
    """Exponential backoff after ``attempts`` failed inserts of a batch: 1, 2, 4, 8 minutes, at most 15."""
    return min(SPOOL_RETRY_BASE * 2 ** max(attempts - 1, 0), SPOOL_RETRY_MAX)


def _drain_one() -> tuple[str, int] | None:
    """Insert the next due batch and delete it; None when no batch is due.

    The row lock (``SKIP LOCKED``) keeps two drains from inserting one batch at the same time; SQLite
    has no row locks, and there the only cost of a race is a replay that the dedup views absorb.
    """
    with transaction.atomic():
        batch = (
            SpoolBatch.objects.select_for_update(skip_locked=True)
            .filter(next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at", "id")
            .first()
        )
        if batch is None:
            return None
        table = _TABLES[SpoolKind(batch.kind)]
        try:
            clickhouse.insert(table.name, [table.from_json(row) for row in batch.payload], table.columns)
        except (ClickHouseError, ValueError, TypeError, KeyError, IndexError) as exc:
            batch.attempts += 1
            batch.last_error = str(exc)[:2000]
            batch.next_attempt_at = timezone.now() + spool_retry_delay(batch.attempts)
            batch.save(update_fields=["attempts", "last_error", "next_attempt_at"])
            logger.warning(
                "Spooled batch %s (%d %s rows) failed, attempt %d, next at %s: %s",
                batch.pk, batch.row_count, batch.kind, batch.attempts, batch.next_attempt_at, exc,
            )  # fmt: skip
            return ("unavailable" if isinstance(exc, ClickHouseUnavailable) else "failed", 0)
        batch.delete()
        clickhouse_breaker.reset()  # ClickHouse takes inserts again
        return ("drained", batch.row_count)


def spool_drain(*, max_batches: int = 1_000, time_budget_seconds: float = 45.0) -> DrainResult:
    """Insert spooled batches that are due, oldest first, until none is due or ClickHouse is down.

    A batch that fails waits ``spool_retry_delay(attempts)`` before it is tried again. When ClickHouse
    is unreachable the drain stops at the first failure: the other batches would fail the same way.
    """
    deadline = time.monotonic() + time_budget_seconds
    drained_batches = drained_rows = failed = 0
    while drained_batches + failed < max_batches and time.monotonic() < deadline:
        outcome = _drain_one()
        if outcome is None:
            break
        status, rows = outcome
        if status == "drained":
            drained_batches += 1
            drained_rows += rows
            continue
        failed += 1
        if status == "unavailable":
            break
    result = DrainResult(
        drained_batches=drained_batches,
        drained_rows=drained_rows,
        failed_batches=failed,
        remaining_batches=SpoolBatch.objects.count(),
    )
    if drained_batches or failed:
        logger.info("Spool drain: %s", result)
    return result


def spool_depth() -> SpoolDepth:
    """How much is waiting in the spool (for ``/api/health``: rows waiting, and since when)."""
    totals = SpoolBatch.objects.aggregate(
        batches=Count("id"), rows=Sum("row_count"), oldest=Min("created_at")
    )
    return SpoolDepth(batches=totals["batches"], rows=totals["rows"] or 0, oldest=totals["oldest"])
