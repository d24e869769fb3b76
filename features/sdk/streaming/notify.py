"""Telling stream servers that the flag configuration changed: in this process, and through Redis.

Publishing: ``publish_change`` is a change listener of ``features.sdk.cache`` (registered by the app's
``ready``), so it runs after every ``config_invalidate`` in every process that writes (web, Celery
worker, management commands). With ``REDIS_URL`` set it publishes one short message on the channel
``CHANNEL`` (under the cache's key prefix, so deployments sharing a Redis do not wake each other).
Redis pub/sub delivers only to those listening at that moment, which is all a stream server needs:
on (re)subscribing it rebuilds anyway, and it re-checks every few seconds.

Subscribing: ``listen`` runs on a stream server's event loop and calls back on every message.
Without Redis there is nothing to listen to: a stream server hears only the changes made in its own
process (``features.sdk.cache.on_change``), which is the embedded one-process mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache

from features.sdk.cache import cache_call

logger = logging.getLogger(__name__)

CHANNEL = "flags:changed"
RECONNECT_SECONDS = 1.0


def redis_url() -> str:
    """The Redis that carries notifications: the cache's (``REDIS_URL``), or "" without one."""
    return getattr(settings, "REDIS_URL", "") or ""


def channel() -> str:
    return cache.make_key(CHANNEL)


def publish_change() -> None:
    """Tell every stream process through Redis that the configuration changed (no-op without Redis).

    Goes through the cache's client (django-redis) and ``features.sdk.cache.cache_call``, so a Redis that is down
    costs this write one timeout and is then skipped like the cache (stream processes then catch up
    by their periodic re-check).
    """
    if not redis_url() or "django_redis" not in settings.CACHES["default"]["BACKEND"]:
        return
    from django_redis import get_redis_connection

    cache_call(lambda: get_redis_connection("default").publish(channel(), b"1"))


async def listen(on_message: Callable[[], None], stop: asyncio.Event, *, url: str | None = None) -> None:
    """Call ``on_message`` for every change published through Redis, until ``stop`` is set.

    Reconnects after a second when Redis goes away, and calls ``on_message`` once subscribed (messages
    sent while it was away are lost, so the caller rebuilds). Reads with a one-second timeout and
    checks ``stop`` in between: redis-py may retry a read that a task cancellation interrupted, so
    cancelling alone does not reliably end a blocked read.
    """
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    url = url or redis_url()
    name = channel()
    failing = False
    while not stop.is_set():
        client = aioredis.from_url(url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(name)
            if failing:
                logger.info("Stream notifications: subscribed to Redis again.")
                failing = False
            on_message()
            while not stop.is_set():
                message = await pubsub.get_message(timeout=RECONNECT_SECONDS)
                if message is not None and message.get("type") == "message":
                    on_message()
        except (RedisError, OSError) as exc:
            if not failing:
                logger.warning("Stream notifications: Redis unavailable (%s); retrying every second.", exc)
                failing = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONNECT_SECONDS):
                    await stop.wait()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
                await client.aclose()
