"""GrowthBook's streaming protocol: ``GET /sub/{client_key}``, server-sent events of the payload.

What GrowthBook's SDKs expect (read from their sources, Python 4.0.0 and JavaScript 1.8.0): a
``text/event-stream`` at ``{apiHost}/sub/{clientKey}``; an event ``features`` whose data is the whole
payload as ``/api/features/{key}`` serves it (``features``, ``dateUpdated``), which they apply at once;
an event ``features-updated`` without data makes them fetch the payload again (not sent here). The
JavaScript SDK opens the stream only when ``/api/features`` answered ``x-sse-support: enabled``, and
ignores a payload whose ``dateUpdated`` it already has; the Python SDK (``streaming=True``) opens it
regardless. On an error status the Python SDK stops streaming for good, the JavaScript one retries
with a growing back-off; when the server ends a stream both reconnect.

How it is served (``features.sdk.streaming.app``, mounted by ``config.asgi``): each stream is a coroutine
on an asyncio event loop (uvicorn), not a thread, so thousands of idle streams cost sockets and a few
KiB each and never hold one of the threads that serve requests. The ``Hub``
(``features.sdk.streaming.hub``) keeps the open streams by environment and key, within the limits
``SDK_STREAM_MAX_CONNECTIONS`` (503) and ``SDK_STREAM_MAX_PER_KEY`` (429), and after every change
rebuilds each watched environment's payload once (through the compiled configuration,
``features.config``) and sends it to the streams whose last payload differs.

How a change reaches it (``features.sdk.streaming.notify``): every change to the configuration goes
through ``features.sdk.cache.config_invalidate``, whose change listeners run in the process that wrote.
There the stream server of the same process (the embedded one-process mode) is woken directly, and,
when ``REDIS_URL`` is set, a message is published on a Redis channel that every stream process
subscribes to. A lost message (Redis restarting) is covered by a re-check every few seconds
(``hub.RECHECK_SECONDS``), which also catches writes that bypass the model layer once the compiled
configuration reaches its ``FLAGS_CONFIG_MAX_AGE``.

This module holds only what the payload endpoint needs to know: whether to advertise streaming.
"""

from __future__ import annotations

from django.conf import settings

__all__ = ["advertised", "serving_started", "serving_stopped"]

_serving = 0  # stream servers running in this process (started by their ASGI lifespan)


def serving_started() -> None:
    global _serving
    _serving += 1


def serving_stopped() -> None:
    global _serving
    _serving = max(_serving - 1, 0)


def mode() -> str:
    """``SDK_STREAMING``: ``auto`` (default), ``on`` or ``off``."""
    return getattr(settings, "SDK_STREAMING", "auto")


def advertised() -> bool:
    """Whether ``/api/features`` answers ``x-sse-support: enabled`` (so the JavaScript SDK streams).

    ``on``: a proxy routes ``/sub/*`` to a stream process; ``off``: never; ``auto``: only from a
    process that serves ``/sub`` itself (uvicorn on ``config.asgi``, as ``make serve`` runs it), never
    from a plain WSGI server, where ``/sub`` does not exist.
    """
    current = mode()
    if current == "on":
        return True
    if current == "off":
        return False
    return _serving > 0
