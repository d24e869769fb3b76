"""The one cache mechanism of the SDK edge: a configuration generation, and memos keyed by it.

Everything an SDK request reads from the database (an environment's compiled flag configuration,
``features.config``; an SDK key, ``features.sdk.keys``; the browser origins environments allow,
``features.sdk.cors``) is read through a ``GenerationMemo``, so that a warm request reads no table:

1. **The generation**: a random token in Django's cache (``GENERATION_KEY``). Every committed change
   to features, rules, environment switches, prerequisites, experiments, variants, environments and
   SDK keys replaces it (``config_invalidate``, wired to model signals in ``features.signals``).
   A process reads it at most once a second (``FLAGS_GENERATION_CHECK_SECONDS``): that read is the
   only cache round trip of a warm SDK request, and a change made through another process is served
   here within that second (one made through this process, at once).
2. **The shared entry** (optional): the plain data read from the database, in Django's cache under
   the memo's name, the generation and the key, shared by every process.
3. **The process memo**: the value (possibly compiled from the plain data) per key, valid while the
   generation is unchanged and the database read is younger than ``FLAGS_CONFIG_MAX_AGE``.

Safety nets, the same for every memo:

- Writes that bypass model signals (``QuerySet.update()``, raw SQL) are picked up after at most
  ``FLAGS_CONFIG_MAX_AGE`` seconds (default 60): entries are read again from the database once they
  are that old.
- The database down: the last value this process read is served (stale) and a warning logged; a key
  this process never read cannot be answered and the ``DatabaseError`` propagates.
- The cache (Redis) down: the process memo and the database serve. After a cache error the cache is
  left alone for ``CACHE_RETRY_SECONDS`` (``cache_call``), so a dead Redis costs one timeout, not
  one per request. A change made while the cache is down drops this process's memos
  (``memo_clear``) and reaches other processes within the max age.
- Without Redis (the local-memory cache) each process has its own generation; run one process
  (the embedded default), or set ``REDIS_URL`` when running several, or changes made through one
  process reach the others only after the max age.

``VersionMemo`` is the small sibling for values derived from a compiled configuration (the payload
body, the remote-evaluation rules): keyed by what decides them, bounded, dropped with the others.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.dispatch import receiver

__all__ = [
    "CACHE_ERRORS",
    "GENERATION_KEY",
    "GenerationMemo",
    "VersionMemo",
    "cache_call",
    "cache_missing",
    "config_invalidate",
    "current_generation",
    "generation_refresh",
    "max_age",
    "memo_clear",
    "on_change",
    "on_invalidate",
]

logger = logging.getLogger(__name__)

GENERATION_KEY = "flags:generation"
CACHE_RETRY_SECONDS = 5.0


def _cache_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]  # OSError subclasses from sockets
    try:
        from redis.exceptions import RedisError

        errors.append(RedisError)
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    try:
        from django_redis.exceptions import ConnectionInterrupted

        errors.append(ConnectionInterrupted)
    except ImportError:  # pragma: no cover - django-redis is a dependency
        pass
    return tuple(errors)


# What a cache backend raises when its server is unreachable: anything else is a bug and propagates.
CACHE_ERRORS = _cache_errors()

MISSING: Any = object()  # what ``cache_call`` answers when the cache is unreachable
_cache_down_until = 0.0
_generation_seen: tuple[str | None, float] = (None, 0.0)  # (generation, monotonic time it was read)
_invalidation_listeners: list[Callable[[], None]] = []
_change_listeners: list[Callable[[], None]] = []

T = TypeVar("T")
V = TypeVar("V")


# Optional settings, read on every SDK request: kept here and refreshed when a test changes them.
_TUNING_DEFAULTS = {"FLAGS_CONFIG_MAX_AGE": 60.0, "FLAGS_GENERATION_CHECK_SECONDS": 1.0}
_tuning: dict[str, float] = {}


def _tuning_value(name: str) -> float:
    value = _tuning.get(name)
    if value is None:
        value = _tuning[name] = float(getattr(settings, name, _TUNING_DEFAULTS[name]))
    return value


@receiver(setting_changed)
def _tuning_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in _TUNING_DEFAULTS:
        _tuning.pop(setting, None)


def max_age() -> float:
    """Seconds a database read may be served before it is read again (``FLAGS_CONFIG_MAX_AGE``)."""
    return _tuning_value("FLAGS_CONFIG_MAX_AGE")


def generation_check_seconds() -> float:
    return _tuning_value("FLAGS_GENERATION_CHECK_SECONDS")


# --- the cache, behind a breaker ------------------------------------------------------------------------
def cache_call(operation: Callable[..., T], *args: Any, **kwargs: Any) -> T | object:
    """Run one cache operation; ``MISSING`` when the cache is unreachable (then skipped for a few seconds)."""
    global _cache_down_until
    if _cache_down_until and time.monotonic() < _cache_down_until:
        return MISSING
    try:
        result = operation(*args, **kwargs)
    except CACHE_ERRORS as exc:
        if not _cache_down_until:
            logger.warning("Flag cache unavailable (%s); serving from memory and the database.", exc)
        _cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS
        return MISSING
    if _cache_down_until:
        logger.info("Flag cache available again.")
        _cache_down_until = 0.0
    return result


def cache_missing(value: object) -> bool:
    return value is MISSING


# --- the generation -------------------------------------------------------------------------------------
def _read_generation() -> str | None:
    generation = cache_call(cache.get, GENERATION_KEY)
    if generation is MISSING:
        return None
    if generation is None:
        cache_call(cache.add, GENERATION_KEY, uuid.uuid4().hex, None)
        generation = cache_call(cache.get, GENERATION_KEY)
        if generation is MISSING or generation is None:
            return None
    return generation


def current_generation() -> str | None:
    """The cache generation, or None when the cache is unreachable.

    Read from the cache at most every ``FLAGS_GENERATION_CHECK_SECONDS`` (default 1) per process: a
    round trip to Redis costs more than the rest of an OFREP request, and a change made through
    another process may take that long to be seen here (one made here is seen at once).
    """
    global _generation_seen
    generation, read_at = _generation_seen
    now = time.monotonic()
    if read_at and now - read_at < generation_check_seconds():
        return generation
    generation = _read_generation()
    _generation_seen = (generation, now)
    return generation


def generation_refresh() -> str | None:
    """The cache generation read now, past the once-a-second throttle of ``current_generation``.

    For the stream server (``features.sdk.streaming``): told that something changed, it must not
    rebuild under the generation it read up to a second ago.
    """
    global _generation_seen
    _generation_seen = (None, 0.0)
    return current_generation()


def config_invalidate() -> None:
    """Make every process reload what it memoised: a new generation, which all memos compare with.

    When the cache is unreachable only this process can be told: its memos are dropped, and other
    processes see the change within the max age. Then the change listeners run (``on_change``: the
    streaming notification, in this process and through Redis to the others).
    """
    global _generation_seen
    generation = uuid.uuid4().hex
    if not cache_missing(cache_call(cache.set, GENERATION_KEY, generation, None)):
        _generation_seen = (generation, time.monotonic())
    else:
        _generation_seen = (None, 0.0)
        memo_clear()
        logger.warning(
            "Flag configuration changed while the cache is unavailable; other processes "
            "will see the change within %s seconds.",
            max_age(),
        )
    for listener in list(_change_listeners):
        try:
            listener()
        except Exception:  # noqa: BLE001 - a listener must never fail the write that invalidated
            logger.exception("A flag configuration change listener failed.")


def on_change(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after every invalidation made in this process; returns its removal.

    Every committed change to what the configuration is built from comes through
    ``config_invalidate``, so this is where streaming learns of changes (``features.sdk.streaming``).
    """
    _change_listeners.append(listener)

    def remove() -> None:
        if listener in _change_listeners:
            _change_listeners.remove(listener)

    return remove


def memo_clear() -> None:
    """Drop every memo of this process (compiled configurations, SDK keys, origins, payloads)."""
    for listener in _invalidation_listeners:
        listener()


def on_invalidate(listener: Callable[[], None]) -> None:
    """Call ``listener`` from ``memo_clear`` (when an invalidation cannot reach the cache, and in tests)."""
    _invalidation_listeners.append(listener)


# --- the memos ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    generation: str | None
    value: V
    read_at: float  # wall time of the database read


class GenerationMemo(Generic[V]):
    """Values read from the database, memoised per key under the configuration generation.

    ``get(key, load)`` answers from this process's memo while the generation is unchanged and the
    read is younger than the max age; else from the shared cache entry (when ``shared``), else from
    ``load()`` (the database), whose answer is then shared. ``build(plain, previous, generation)``
    turns the plain (cacheable) data into what the process keeps, and may reuse ``previous`` (the
    value memoised before, or None). While the database is down the last value is served.
    """

    def __init__(self, name: str, *, shared: bool = True, limit: int = 10_000, what: str = "") -> None:
        self.name = name  # the shared entries' key prefix
        self.shared = shared
        self.limit = limit  # keys remembered per process (guessed SDK keys would grow it)
        self.what = what or name  # for the log
        self._entries: dict[Hashable, _Entry[V]] = {}
        on_invalidate(self.clear)

    def clear(self) -> None:
        self._entries.clear()

    def get(
        self,
        key: Hashable,
        load: Callable[[], Any],
        *,
        generation: str | None | object = MISSING,
        build: Callable[[Any, V | None, str | None], V] | None = None,
    ) -> V:
        if generation is MISSING:
            generation = current_generation()
        now = time.time()
        limit = max_age()
        hit = self._entries.get(key)
        if (
            hit is not None
            and (generation is None or hit.generation == generation)
            and now - hit.read_at < limit
        ):
            return hit.value
        shared_key = f"{self.name}:{generation}:{key}" if self.shared and generation is not None else None
        entry = cache_call(cache.get, shared_key) if shared_key is not None else None
        if isinstance(entry, dict) and "plain" in entry and now - entry.get("read_at", 0.0) < limit:
            plain, read_at = entry["plain"], entry["read_at"]
        else:
            try:
                plain = load()
            except DatabaseError:
                if hit is None:
                    raise
                # Better an answer a minute old than none while the database is down; the next request
                # tries the database again.
                logger.warning("Could not read %s from the database; serving the last answer.", self.what)
                return hit.value
            read_at = now
            if shared_key is not None:
                cache_call(cache.set, shared_key, {"plain": plain, "read_at": read_at}, limit)
        previous = hit.value if hit is not None else None
        value = build(plain, previous, generation) if build is not None else plain
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = _Entry(generation, value, read_at)
        return value


class VersionMemo(Generic[V]):
    """Values derived from a compiled configuration, keyed by what decides them (environment,
    generation, version, ...): bounded, and dropped with every other memo (``memo_clear``)."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._values: dict[Hashable, V] = {}
        on_invalidate(self._values.clear)

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        value = self._values.get(key)
        if value is None:
            value = build()
            if len(self._values) >= self.limit:
                self._values.clear()
            self._values[key] = value
        return value
