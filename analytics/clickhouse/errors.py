"""The two errors every ClickHouse caller has to know about.

``ClickHouseError`` is any failure of a statement (bad SQL, unknown table, a value that does not fit
its type). ``ClickHouseUnavailable`` is the transient kind: the server cannot be reached, a timeout,
or the embedded data directory is owned by another process. Callers that must not lose data (the
ingestion path) spool on ``ClickHouseUnavailable`` and let everything else surface.
"""

import re

# ClickHouse error codes that mean "try again later" rather than "this statement is wrong".
TRANSIENT_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        319,  # UNKNOWN_STATUS_OF_INSERT
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
    }
)

_CODE_RE = re.compile(r"\bCode: (\d+)\b")


class ClickHouseError(Exception):
    """A ClickHouse statement failed; ``code`` is ClickHouse's error code when it sent one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ClickHouseUnavailable(ClickHouseError):
    """ClickHouse cannot be reached right now (refused, timed out, data directory in use)."""


def error_code(message: str) -> int | None:
    """The ``Code: NNN`` ClickHouse puts at the start of its exception text, if present."""
    match = _CODE_RE.search(message)
    return int(match.group(1)) if match else None


def error_from_message(message: str, *, code: int | None = None) -> ClickHouseError:
    """The right exception class for a ClickHouse exception text."""
    message = message.strip()
    code = code if code is not None else error_code(message)
    cls = ClickHouseUnavailable if code in TRANSIENT_CODES else ClickHouseError
    return cls(message, code=code)
