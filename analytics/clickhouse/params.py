"""Bound query parameters: ClickHouse's server-side ``{name:Type}`` placeholders, on both backends.

A value is never formatted into SQL. Both backends hand ClickHouse the parameter's text form and the
type from the placeholder, and ClickHouse parses it as a value of that type (over HTTP this is the
``param_<name>`` URL parameter; chDB takes the same text). The text form is clickhouse-connect's own
``format_bind_value``, so the two backends bind identically; ``prepare`` first turns the Python values
it does not render the way we need (sub-second datetimes, UUIDs inside arrays, maps, booleans) into
ones it does.
"""

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

from clickhouse_connect.driver.binding import format_bind_value

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^{}]+\}")


class _MapLiteral:
    """A ``Map`` parameter: clickhouse-connect renders ``str(value)`` verbatim for unknown objects."""

    def __init__(self, items: Mapping[Any, Any]) -> None:
        self.items = items

    def __str__(self) -> str:
        pairs = (
            f"{format_bind_value(key, top_level=False)}:{format_bind_value(value, top_level=False)}"
            for key, value in self.items.items()
        )
        return "{" + ", ".join(pairs) + "}"


def _prepare_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)  # "1"/"0" parse as Bool and as UInt8; "True" only as Bool
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        # Naive datetimes are taken as UTC (settings.TIME_ZONE is UTC). Whole seconds are written
        # without a fraction so that they bind to DateTime as well as to DateTime64.
        return value.strftime("%Y-%m-%d %H:%M:%S.%f" if value.microsecond else "%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return _MapLiteral({_prepare_value(k): _prepare_value(v) for k, v in value.items()})
    if isinstance(value, list | tuple | set | frozenset):
        items = [_prepare_value(item) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def prepare(sql: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Parameters checked against the SQL's placeholders, as values clickhouse-connect binds server-side.

    Every parameter must have a ``{name:Type}`` placeholder and every placeholder a parameter: a
    parameter without one would make clickhouse-connect fall back to client-side formatting.
    """
    params = params or {}
    placeholders = set(PLACEHOLDER_RE.findall(sql))
    for name in params:
        if not isinstance(name, str) or not IDENTIFIER_RE.match(name):
            raise ValueError(f"Query parameter names must be identifiers, got {name!r}.")
        if name not in placeholders:
            raise ValueError(f"Query parameter {name!r} has no {{{name}:Type}} placeholder in the SQL.")
    missing = placeholders - params.keys()
    if missing:
        raise ValueError(f"The SQL has placeholders without a value: {', '.join(sorted(missing))}.")
    return {name: _prepare_value(value) for name, value in params.items()}


def as_text(prepared: Mapping[str, Any]) -> dict[str, str]:
    """Prepared parameters in ClickHouse's parameter text form (what HTTP sends as ``param_<name>``)."""
    return {name: format_bind_value(value) for name, value in prepared.items()}
