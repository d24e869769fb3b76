"""Validation of SDK-sent events and exposures, item by item.

Hand-written rather than DRF serializers because it runs on every item of every batch (the
ingestion goal is 20,000 events/s on two cores); the DRF serializers in
``serializers.py`` describe the same shapes for the OpenAPI document. Each rejected item
is reported with its index and, per field, the reason; accepted items go on as storage rows.
"""

import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from features.sdk.serializers import UNIT_ID_MAX_LENGTH

MAX_ITEMS = 1000
MAX_NAME_LENGTH = 200
MAX_PROPERTIES = 50
MAX_PROPERTY_KEY_LENGTH = 100
MAX_PROPERTY_VALUE_LENGTH = 1000


@dataclass
class Rejection:
    index: int
    errors: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "errors": self.errors}


@dataclass
class TimeBounds:
    earliest: dt.datetime | None  # None: no past bound
    latest: dt.datetime

    @classmethod
    def around(cls, now: dt.datetime) -> "TimeBounds":
        """Events: from EVENT_MAX_PAST_DAYS ago to EVENT_MAX_FUTURE_HOURS ahead."""
        return cls(
            earliest=now - dt.timedelta(days=settings.EVENT_MAX_PAST_DAYS),
            latest=now + dt.timedelta(hours=settings.EVENT_MAX_FUTURE_HOURS),
        )

    @classmethod
    def until(cls, now: dt.datetime) -> "TimeBounds":
        """Exposures: any time in the past, since every exposure counts whatever its timestamp
        (docs/analysis.md: clients may send late); a future one is still a broken clock."""
        return cls(earliest=None, latest=now + dt.timedelta(hours=settings.EVENT_MAX_FUTURE_HOURS))


def _text(item: Mapping[str, Any], field: str, limit: int, errors: dict[str, str]) -> str | None:
    value = item.get(field)
    if not isinstance(value, str) or not value.strip():
        errors[field] = "Required: a non-empty string."
        return None
    if len(value) > limit:
        errors[field] = f"At most {limit} characters (got {len(value)})."
        return None
    return value


def _timestamp(item: Mapping[str, Any], bounds: TimeBounds, errors: dict[str, str]) -> dt.datetime | None:
    raw = item.get("timestamp")
    if raw is None:
        return None
    if not isinstance(raw, str):
        errors["timestamp"] = "An ISO 8601 string, e.g. 2026-11-27T10:00:00Z."
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        errors["timestamp"] = f"Not an ISO 8601 date and time: {raw[:40]!r}."
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if bounds.earliest is not None and value < bounds.earliest:
        errors["timestamp"] = f"More than {settings.EVENT_MAX_PAST_DAYS} days in the past."
        return None
    if value > bounds.latest:
        errors["timestamp"] = f"More than {settings.EVENT_MAX_FUTURE_HOURS} hour(s) in the future."
        return None
    return value


def _string_map(item: Mapping[str, Any], field: str, errors: dict[str, str], *, scalars: bool) -> dict | None:
    raw = item.get(field)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors[field] = "An object of string keys to string values."
        return None
    if len(raw) > MAX_PROPERTIES:
        errors[field] = f"At most {MAX_PROPERTIES} entries."
        return None
    for key, value in raw.items():
        if len(key) > MAX_PROPERTY_KEY_LENGTH:
            errors[field] = f"Keys are at most {MAX_PROPERTY_KEY_LENGTH} characters."
            return None
        ok = isinstance(value, str) or (scalars and (value is None or isinstance(value, int | float | bool)))
        if not ok:
            kind = "strings, numbers or booleans" if scalars else "strings"
            errors[field] = f"A flat map: the value of {key[:40]!r} must be one of {kind}."
            return None
        if isinstance(value, str) and len(value) > MAX_PROPERTY_VALUE_LENGTH:
            errors[field] = f"Values are at most {MAX_PROPERTY_VALUE_LENGTH} characters."
            return None
    return raw


def _value_error(value: Any, limit: float) -> str | None:
    """Why an event's ``value`` cannot be stored, or None. Metrics sum values (and their squares) over
    units, so a value past ``EVENT_MAX_ABS_VALUE`` would overflow the sums and leave no results."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "A finite number."
    if isinstance(value, float) and not math.isfinite(value):
        return "A finite number."
    if not -limit <= value <= limit:  # exact for ints of any size: no conversion to float
        return (
            f"At most {limit:g} in absolute value (the setting EVENT_MAX_ABS_VALUE): metrics add values "
            "and their squares up, and larger ones would overflow the sums."
        )
    return None


def _event_fast(item: Any, bounds: TimeBounds, environment: str, limit: float) -> dict[str, Any] | None:
    """The storage row of a well-formed event, or None to let the field-by-field path explain.

    Most events are well-formed; checking them inline, without building error messages, is what
    keeps validation a small share of the ingestion cost.
    """
    if type(item) is not dict:
        return None
    name, unit_id = item.get("name"), item.get("unit_id")
    if not (type(name) is str and 0 < len(name) <= MAX_NAME_LENGTH and not name.isspace()):
        return None
    if not (type(unit_id) is str and 0 < len(unit_id) <= UNIT_ID_MAX_LENGTH and not unit_id.isspace()):
        return None
    value = item.get("value", 1)
    if value is None:
        value = 1
    if not (type(value) is float or type(value) is int) or not -limit <= value <= limit:  # NaN fails too
        return None
    event_id = item.get("event_id")
    if event_id is not None:
        if type(event_id) is not str:
            return None
        try:
            event_id = uuid.UUID(event_id)
        except ValueError:
            return None
    timestamp = item.get("timestamp")
    if timestamp is not None:
        if type(timestamp) is not str:
            return None
        try:
            timestamp = dt.datetime.fromisoformat(timestamp)
        except ValueError:
            return None
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=dt.UTC)
        if not bounds.earliest <= timestamp <= bounds.latest:
            return None
    properties = item.get("properties")
    if properties is None:
        properties = {}
    elif type(properties) is not dict or len(properties) > MAX_PROPERTIES:
        return None
    else:
        for key, text in properties.items():
            if (
                type(text) is not str
                or len(text) > MAX_PROPERTY_VALUE_LENGTH
                or len(key) > MAX_PROPERTY_KEY_LENGTH
            ):
                return None
    return _event_row(event_id, name, unit_id, value, timestamp, environment, properties)


def _event_row(event_id, name, unit_id, value, timestamp, environment, properties) -> dict[str, Any]:
    """A storage row for ``analytics.ingestion.services.events_write`` (both validation paths end here)."""
    return {
        "event_id": event_id,
        "name": name,
        "unit_id": unit_id,
        "value": float(value),
        "timestamp": timestamp,
        "environment": environment,
        "properties": properties,
    }


def events_validate(
    items: Sequence[Any], *, environment: str, now: dt.datetime
) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """Split a batch into storage rows and rejections (index + per-field reasons)."""
    bounds = TimeBounds.around(now)
    limit = float(settings.EVENT_MAX_ABS_VALUE)
    rows: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for index, item in enumerate(items):
        row = _event_fast(item, bounds, environment, limit)
        if row is not None:
            rows.append(row)
            continue
        if not isinstance(item, dict):
            rejected.append(Rejection(index, {"item": "Each event must be an object."}))
            continue
        errors: dict[str, str] = {}
        name = _text(item, "name", MAX_NAME_LENGTH, errors)
        unit_id = _text(item, "unit_id", UNIT_ID_MAX_LENGTH, errors)
        value = item.get("value", 1)
        if value is None:
            value = 1
        if value_error := _value_error(value, limit):
            errors["value"] = value_error
        event_id = item.get("event_id")
        if event_id is not None:
            try:
                event_id = uuid.UUID(event_id) if isinstance(event_id, str) else None
            except ValueError:
                event_id = None
            if event_id is None:
                errors["event_id"] = "A UUID, e.g. 5f0c6c2e-8c4b-4d6e-9f3a-2b1d0e7a9c11."
        timestamp = _timestamp(item, bounds, errors)
        properties = _string_map(item, "properties", errors, scalars=False)
        if errors:
            rejected.append(Rejection(index, errors))
            continue
        rows.append(_event_row(event_id, name, unit_id, value, timestamp, environment, properties))
    return rows, rejected


def exposures_validate(
    items: Sequence[Any],
    *,
    environment: str,
    now: dt.datetime,
    variants_by_experiment: Mapping[str, set[str]],
    created_by_experiment: Mapping[str, dt.datetime] | None = None,
) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """As `events_validate`; each exposure's experiment and variant must exist, and its timestamp may
    be as old as it likes (clients send late), but not older than the experiment itself, less
    ``EXPOSURE_MAX_HOURS_BEFORE_CREATION`` of clock skew (``created_by_experiment``: creation times)."""
    bounds = TimeBounds.until(now)
    skew = dt.timedelta(hours=settings.EXPOSURE_MAX_HOURS_BEFORE_CREATION)
    created_by_experiment = created_by_experiment or {}
    rows: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            rejected.append(Rejection(index, {"item": "Each exposure must be an object."}))
            continue
        errors: dict[str, str] = {}
        experiment = _text(item, "experiment", MAX_NAME_LENGTH, errors)
        variant = _text(item, "variant", MAX_NAME_LENGTH, errors)
        unit_id = _text(item, "unit_id", UNIT_ID_MAX_LENGTH, errors)
        if experiment is not None:
            known = variants_by_experiment.get(experiment)
            if known is None:
                errors["experiment"] = f"There is no experiment {experiment[:100]!r}."
            elif variant is not None and variant not in known:
                errors["variant"] = (
                    f"{variant[:100]!r} is not a variant of {experiment}; known: {', '.join(sorted(known))}."
                )
        timestamp = _timestamp(item, bounds, errors)
        created = created_by_experiment.get(experiment) if experiment is not None else None
        if timestamp is not None and created is not None and timestamp < created - skew:
            errors["timestamp"] = (
                f"Before the experiment existed: {experiment} was created at {created.isoformat()}."
            )
        attributes = _string_map(item, "attributes", errors, scalars=True)
        if errors:
            rejected.append(Rejection(index, errors))
            continue
        rows.append(
            {
                "experiment": experiment,
                "variant": variant,
                "unit_id": unit_id,
                "timestamp": timestamp,
                "environment": environment,
                "attributes": attributes,
            }
        )
    return rows, rejected
