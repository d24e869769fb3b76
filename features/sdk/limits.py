"""The SDK edge's limits, checked in one place each: the body size and the per-key request rate.

Body: an SDK endpoint reads at most ``SDK_MAX_BODY_BYTES`` (1 MiB; assign, evaluate, OFREP, remote
evaluation, events, exposures), any other endpoint at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django
applies that limit to forms, not to the JSON that DRF reads). ``body_check`` refuses a declared
length past the limit before anything is read (the edge middleware, for every request);
``body_read`` also refuses a chunked body, which declares no length, once read (the views that
read the raw body). Both raise ``BodyTooLarge``; each endpoint words the answer in its own format.

Rate: ``rate_check`` counts a key's request against ``SDK_RATE_LIMIT_PER_MINUTE`` (0: no limit)
and raises ``RateLimited`` past it, with the seconds until the next window.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from features.sdk.cache import cache_call, cache_missing
from features.sdk.keys import SdkClient

__all__ = [
    "BodyTooLarge",
    "RateLimited",
    "SdkRateLimiter",
    "body_check",
    "body_read",
    "declared_length",
    "rate_check",
    "rate_limiter",
]


# --- the body ----------------------------------------------------------------------------------------------
class BodyTooLarge(Exception):
    """A request body past its limit: 413. ``str()`` is "The body is larger than N bytes"."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The body is larger than {limit} bytes")
        self.limit = limit


def declared_length(request: HttpRequest) -> int:
    """The body's ``Content-Length`` (0 when absent or not a number: a chunked body)."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def body_check(request: HttpRequest, limit: int | None = None) -> None:
    """Refuse a declared body past ``limit`` (default ``SDK_MAX_BODY_BYTES``) before it is read."""
    if limit is None:
        limit = settings.SDK_MAX_BODY_BYTES
    if declared_length(request) > limit:
        raise BodyTooLarge(limit)


def body_read(request: HttpRequest, limit: int | None = None) -> bytes:
    """The body, at most ``limit`` bytes (default ``SDK_MAX_BODY_BYTES``), declared or chunked."""
    if limit is None:
        limit = settings.SDK_MAX_BODY_BYTES
    body_check(request, limit)
    body = request.body
    if len(body) > limit:  # a chunked body declares no length
        raise BodyTooLarge(limit)
    return body


# --- the rate ----------------------------------------------------------------------------------------------
class RateLimited(Exception):
    """A key past ``SDK_RATE_LIMIT_PER_MINUTE``: 429 with ``Retry-After: retry_after``."""

    def __init__(self, per_minute: int, retry_after: int) -> None:
        super().__init__(f"more than {per_minute} requests this minute; retry in {retry_after} seconds.")
        self.per_minute = per_minute
        self.retry_after = retry_after


@dataclass
class _Window:
    """One key's requests in one minute, as this process knows them."""

    index: int  # minutes since the epoch
    known: int = 0  # the shared count at the last sync (only grows within the minute)
    pending: int = 0  # served here since the last sync, not yet added to the shared count
    synced_at: float = 0.0


class SdkRateLimiter:
    """Requests per SDK key per minute, counted in Django's cache (Redis in production), shared by
    every process; fixed one-minute windows.

    A shared counter costs a cache round trip, which costs more than an OFREP evaluation, so each
    process adds its requests to it at most once a ``SYNC_SECONDS``, and on every request once its
    estimate (shared count + its own since) reaches the limit: exact at the limit for one process;
    with several, a key can exceed its limit by what the other processes served in the last second.
    Refusals are not counted. When the cache is unreachable nothing is refused (fail open): the
    platform's availability matters more than the limit, and ``features.sdk.cache.cache_call`` leaves
    the cache alone for a few seconds after an error, so a dead cache costs one timeout, not one a
    request.
    """

    WINDOW_SECONDS = 60
    SYNC_SECONDS = 1.0
    MAX_KEYS = 10_000  # windows remembered per process (only authenticated keys are counted)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def reset(self) -> None:
        """Forget this process's counts (the shared ones stay): a fresh process, for tests."""
        with self._lock:
            self._windows.clear()

    def hit(self, key_tag: str, limit: int) -> int | None:
        """Count one request of the key (``SdkClient.key_tag``): None when allowed, else the seconds
        until the next window."""
        now = time.time()
        index = int(now // self.WINDOW_SECONDS)
        retry_after = max(1, math.ceil((index + 1) * self.WINDOW_SECONDS - now))
        with self._lock:
            window = self._windows.get(key_tag)
            if window is None or window.index != index:
                if len(self._windows) >= self.MAX_KEYS:
                    self._windows.clear()
                window = self._windows[key_tag] = _Window(index)
            if window.known >= limit:
                return retry_after
            window.pending += 1
            if window.known + window.pending < limit and now - window.synced_at < self.SYNC_SECONDS:
                return None
            delta, window.pending, window.synced_at = window.pending, 0, now
        total = cache_call(self._add, f"sdk-rate:{key_tag}:{index}", delta)
        if cache_missing(total):
            return None  # fail open
        with self._lock:
            window.known = max(window.known, total)
        return retry_after if total > limit else None

    def _add(self, key: str, delta: int) -> int:
        try:
            return cache.incr(key, delta)
        except ValueError:  # no counter yet for this minute (both backends raise ValueError)
            if cache.add(key, delta, timeout=2 * self.WINDOW_SECONDS):
                return delta
            return cache.incr(key, delta)  # another process made it meanwhile


rate_limiter = SdkRateLimiter()


def rate_check(client: SdkClient) -> None:
    """Count one request of the client's key; ``RateLimited`` past ``SDK_RATE_LIMIT_PER_MINUTE``."""
    per_minute = settings.SDK_RATE_LIMIT_PER_MINUTE
    if per_minute > 0:
        retry_after = rate_limiter.hit(client.key_tag, per_minute)
        if retry_after is not None:
            raise RateLimited(per_minute, retry_after)
