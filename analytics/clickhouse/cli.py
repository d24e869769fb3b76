"""What the ClickHouse management commands share: failures as one clear line, no traceback."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError

from analytics.clickhouse.errors import ClickHouseError

# Libraries that log their own retries and failures; the command reports the failure itself.
_CHATTY_LOGGERS = ("urllib3", "clickhouse_connect")


@contextmanager
def clickhouse_command_errors() -> Iterator[None]:
    """Turn a ``ClickHouseError`` into a one-line ``CommandError`` (exit status 1, no traceback)."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    except ClickHouseError as exc:
        raise CommandError(" ".join(str(exc).split())) from None
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
