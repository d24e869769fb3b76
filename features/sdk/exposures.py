"""Exposures from the decision plane, logged without slowing the request.

When ``/api/v1/assign`` (with ``log_exposure``), ``/api/v1/evaluate`` or OFREP serves a unit from an
experiment, the request appends one tuple to an in-process buffer (a lock and a list append, well
under a microsecond) and returns. A daemon thread flushes the buffer about every second, or at once
when a batch is full, and at interpreter exit; a flush hands each batch to the data plane as one
Celery task call, ``analytics.tasks.exposures_record.delay(rows)``, with rows
``{experiment, variant, unit_id, timestamp (ISO 8601), environment, attributes (dict str -> str)}``.

Which id decided: when the experiment hashed an attribute other than the unit id (its
``hash_attribute``, e.g. ``company_id``, or its ``fallback_attribute``), the row's ``attributes`` also
carry ``$hash_attribute`` (that attribute's name) and ``$hash_value`` (the text hashed). A row without
them was decided by its ``unit_id``. (``$`` starts no attribute anyone can target: conditions read it
as an operator.)

Repeats of the same (experiment, variant, unit, environment) waiting in the buffer are handed over
once, with the earliest timestamp (the analysis counts a unit from its first exposure).

Delivery is at most once per process: a broker that refuses the call (Celery's ``OperationalError``)
keeps the batch for the next flush, up to ``MAX_PENDING`` rows; past that new exposures are counted
and dropped rather than growing memory without bound. A batch the task call rejects for any other
reason is logged and dropped, so one bad batch cannot block the ones after it. Rows still buffered
when a process is killed with SIGKILL are lost; the analysis counts a unit from its first exposure,
and SDKs evaluating the same unit again log it again.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import connections

from experiments.bucketing import UNIT_ID_ATTRIBUTE, hash_text
from features.evaluation import Evaluation

logger = logging.getLogger(__name__)

__all__ = [
    "BATCH_SIZE",
    "FLUSH_SECONDS",
    "HASH_ATTRIBUTE_KEY",
    "HASH_VALUE_KEY",
    "MAX_PENDING",
    "ExposureBuffer",
    "buffer",
    "evaluations_log",
    "exposure_log",
    "flush",
    "hash_value_of",
]

BATCH_SIZE = 1_000  # rows per task call
FLUSH_SECONDS = 1.0  # the longest an exposure waits in the buffer while the broker is up
MAX_PENDING = 100_000  # rows kept while the broker is unreachable
HASH_ATTRIBUTE_KEY = "$hash_attribute"  # exposure attributes: the attribute hashed, when not the unit id
HASH_VALUE_KEY = "$hash_value"  # ... and the text hashed

# (experiment, variant, unit_id, unix time, environment, attributes as sent)
PendingRow = tuple[str, str, str, float, str, Mapping[str, Any]]


def _broker_errors() -> tuple[type[BaseException], ...]:
    try:
        from kombu.exceptions import OperationalError
    except ImportError:  # pragma: no cover - kombu comes with celery
        return ()
    return (OperationalError,)


BROKER_ERRORS = _broker_errors()


def attribute_text(value: Any) -> str:
    """An attribute as the exposures table stores it: strings as they are, other JSON values as JSON."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def exposure_row(row: PendingRow) -> dict[str, Any]:
    experiment, variant, unit_id, timestamp, environment, attributes = row
    return {
        "experiment": experiment,
        "variant": variant,
        "unit_id": unit_id,
        "timestamp": dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(),
        "environment": environment,
        "attributes": {str(key): attribute_text(value) for key, value in (attributes or {}).items()},
    }


def _first_of_each(rows: list[PendingRow]) -> list[PendingRow]:
    """One row per (experiment, variant, unit, environment): the earliest. A unit polling its flags
    repeats its exposures; the analysis counts a unit from its first, so repeats only cost volume."""
    first: dict[tuple[str, str, str, str], PendingRow] = {}
    for row in rows:
        key = (row[0], row[1], row[2], row[4])
        kept = first.get(key)
        if kept is None or row[3] < kept[3]:
            first[key] = row
    return list(first.values())


def hand_over(rows: list[dict[str, Any]]) -> None:
    """Give one batch to the data plane (imported here: features never imports analytics at load)."""
    from analytics.tasks import exposures_record

    exposures_record.delay(rows)


class ExposureBuffer:
    """A bounded, thread-safe buffer flushed in batches by a background thread (started on first use)."""

    def __init__(
        self, *, batch_size: int = BATCH_SIZE, interval: float = FLUSH_SECONDS, max_pending: int = MAX_PENDING
    ) -> None:
        self.batch_size = batch_size
        self.interval = interval
        self.max_pending = max_pending
        self.autostart = True  # tests switch the thread off and call flush() themselves
        self.dropped = 0
        self._rows: list[PendingRow] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._atexit = False

    def add(
        self,
        *,
        experiment: str,
        variant: str,
        unit_id: str,
        environment: str,
        attributes: Mapping[str, Any] | None,
        timestamp: float | None = None,
    ) -> None:
        row = (
            experiment,
            variant,
            unit_id,
            time.time() if timestamp is None else timestamp,
            environment,
            attributes or {},
        )
        with self._lock:
            if len(self._rows) >= self.max_pending:
                self.dropped += 1
                if self.dropped % 10_000 == 1:
                    logger.warning(
                        "Exposure buffer full (%s rows): %s exposures dropped so far.",
                        self.max_pending,
                        self.dropped,
                    )
                return
            self._rows.append(row)
            full = len(self._rows) >= self.batch_size
        if self.autostart and (self._pid != os.getpid() or self._thread is None):
            self._start()
        if full:
            self._wake.set()

    def pending(self) -> list[dict[str, Any]]:
        """The rows waiting to be flushed, as they will be handed over."""
        with self._lock:
            return [exposure_row(row) for row in self._rows]

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def flush(self) -> int:
        """Hand every buffered row over now, in batches; returns how many rows were handed over."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            rows = _first_of_each(rows)
            handed = 0
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                try:
                    hand_over([exposure_row(row) for row in batch])
                except BROKER_ERRORS as exc:
                    self._requeue(rows[start:])
                    logger.warning(
                        "Could not hand %s exposures to the broker (%s); retrying.", len(rows) - start, exc
                    )
                    break
                except Exception:
                    # A background flusher must survive anything; the batch is logged and dropped.
                    logger.exception("Dropped a batch of %s exposures the data plane refused.", len(batch))
                    continue
                handed += len(batch)
            return handed

    def _requeue(self, rows: list[PendingRow]) -> None:
        with self._lock:
            room = max(self.max_pending - len(self._rows), 0)
            kept = rows[:room]
            self.dropped += len(rows) - len(kept)
            self._rows[:0] = kept

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            # A fresh thread after a fork: threads do not survive it (gunicorn's preload).
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="exposure-flusher", daemon=True)
            self._thread.start()
            if not self._atexit:
                atexit.register(self.flush)
                self._atexit = True

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                logger.exception("Exposure flush failed; the flusher keeps running.")
            finally:
                # A flush may have opened this thread's own database connection (spooling while
                # ClickHouse is down). No request cycle closes it here, so close it ourselves rather
                # than hold it (and a possibly broken socket) for the life of the process.
                connections.close_all()


buffer = ExposureBuffer()


def hash_value_of(hash_attribute: str, unit_id: str, attributes: Mapping[str, Any]) -> str:
    """The text hashed for ``hash_attribute`` (``id``: the unit id), as ``bucketing.unit_hash`` reads it."""
    if hash_attribute == UNIT_ID_ATTRIBUTE:
        return unit_id
    return hash_text(attributes.get(hash_attribute))


def exposure_log(
    *,
    experiment: str,
    variant: str,
    unit_id: str,
    environment: str,
    attributes: Mapping[str, Any] | None,
    hash_attribute: str | None = UNIT_ID_ATTRIBUTE,
    hash_value: str | None = None,
) -> None:
    """Record that ``unit_id`` was served ``variant`` of ``experiment`` (buffered; returns at once).

    ``hash_attribute`` and ``hash_value`` name the id that decided; other than the unit id, they are
    kept in the row's attributes (module docstring).
    """
    if hash_attribute is not None and hash_attribute != UNIT_ID_ATTRIBUTE:
        attributes = {
            **(attributes or {}),
            HASH_ATTRIBUTE_KEY: hash_attribute,
            HASH_VALUE_KEY: hash_value or "",
        }
    buffer.add(
        experiment=experiment,
        variant=variant,
        unit_id=unit_id,
        environment=environment,
        attributes=attributes,
    )


def evaluations_log(
    evaluations: Iterable[Evaluation], *, unit_id: str, environment: str, attributes: Mapping[str, Any]
) -> None:
    """Record the exposures of flag evaluations (those served by an experiment; buffered)."""
    for evaluation in evaluations:
        for experiment, variant, hash_attribute in evaluation.exposures:
            exposure_log(
                experiment=experiment,
                variant=variant,
                unit_id=unit_id,
                environment=environment,
                attributes=attributes,
                hash_attribute=hash_attribute,
                hash_value=hash_value_of(hash_attribute, unit_id, attributes),
            )


def flush() -> int:
    """Hand the buffered exposures over now (tests, shutdown hooks)."""
    return buffer.flush()
