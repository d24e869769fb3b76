"""The ASGI application that serves ``GET /sub/{client_key}`` and hands every other request on.

``StreamingApp(fallback)`` answers paths under ``/sub/`` itself and passes the rest to ``fallback``
(``config.asgi``: Django in a pool of threads). Its lifespan starts the ``Hub``'s rebuild loop, the
in-process change listener and, with ``REDIS_URL`` set, the Redis subscription; without a lifespan
(a server started with ``--lifespan off``) they start with the first stream.

A stream: ``200 text/event-stream`` with ``Access-Control-Allow-Origin: *`` (the key in the URL is
the credential, as for ``/api/features``), the current payload as a ``features`` event at once
(unless the client's ``Last-Event-ID`` says it has it: each event's ``id`` is the configuration's
version),
then one ``features`` event per change and a comment line (``: keep-alive``) every
``SDK_STREAM_KEEPALIVE_SECONDS`` while idle. Refusals are JSON like the payload endpoint's: 401 for an
unknown or revoked key (``WWW-Authenticate``), 429 past ``SDK_STREAM_MAX_PER_KEY``, 503 past
``SDK_STREAM_MAX_CONNECTIONS`` or without a database (both with ``Retry-After``), 404 when
``SDK_STREAMING`` is ``off``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from features.sdk import cache, streaming
from features.sdk.streaming import notify
from features.sdk.streaming.hub import Hub, StreamRefused

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/sub/"
KEEPALIVE = b": keep-alive\n\n"
UNKNOWN_KEY = (
    "Unknown or revoked key: make a client key with `manage.py create_sdk_key <environment> --client` "
    "or in the admin."
)
CORS = [(b"access-control-allow-origin", b"*")]
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    # nginx and some other proxies buffer responses unless told not to; Caddy flushes event streams.
    (b"x-accel-buffering", b"no"),
    *CORS,
]


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (each stream is a socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


async def _answer(send: Send, status: int, body: bytes = b"", headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [*(headers or []), *CORS]})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"status": status, "error": message}).encode()
    base = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    await _answer(send, status, body, [*base, *(headers or [])])


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


class StreamingApp:
    """``/sub/{key}`` served here, on the event loop; everything else by ``fallback`` (or 404)."""

    def __init__(self, fallback: ASGIApp | None = None) -> None:
        self.fallback = fallback
        self.hub = Hub()
        self._tasks: list[asyncio.Task] = []
        self._remove_listener: Callable[[], None] | None = None
        self._started = False
        self._stopping = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self._stream(scope, receive, send)
        elif self.fallback is not None:
            await self.fallback(scope, receive, send)
        elif scope["type"] == "http":
            await _error(send, 404, "Not found: this server only serves /sub/<key>.")

    # --- lifespan ----------------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start(self) -> None:
        """Start the rebuild loop and the listeners on the running loop (once)."""
        if self._started:
            return
        self._started = True
        limit = raise_open_files_limit()
        self._tasks.append(asyncio.get_running_loop().create_task(self.hub.run()))
        self._remove_listener = cache.on_change(self.hub.notify_threadsafe)
        if notify.redis_url():
            self._stopping.clear()
            listener = notify.listen(self.hub.notify, self._stopping)
            self._tasks.append(asyncio.get_running_loop().create_task(listener))
        streaming.serving_started()
        logger.info(
            "Streams served on %s (notifications: %s; open files limit %s).",
            PREFIX,
            "this process and Redis" if notify.redis_url() else "this process",
            limit,
        )

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        streaming.serving_stopped()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        self.hub.close_all()
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=5)
        self._tasks.clear()
        await self.hub.release_connections()

    # --- one stream ----------------------------------------------------------------------------------

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        if streaming.mode() == "off":
            await _error(send, 404, "Streaming is switched off on this server (SDK_STREAMING=off).")
            return
        method = scope["method"]
        if method == "OPTIONS":
            await _answer(
                send,
                204,
                headers=[
                    (b"access-control-allow-methods", b"GET, OPTIONS"),
                    (b"access-control-allow-headers", b"Last-Event-ID, Cache-Control"),
                    (b"access-control-max-age", b"600"),
                ],
            )
            return
        if method != "GET":
            await _error(send, 405, f"Method {method} not allowed: GET only.", [(b"allow", b"GET, OPTIONS")])
            return
        self.start()
        key = scope["path"][len(PREFIX) :]
        try:
            self.hub.check_capacity()
            opening = await self.hub.open(key) if key and "/" not in key else None
            if opening is None or opening.client is None:
                await _error(send, 401, UNKNOWN_KEY, [(b"www-authenticate", b'Bearer realm="sdk"')])
                return
            stream = self.hub.admit(key, opening)
        except StreamRefused as refusal:
            await _error(send, refusal.status, refusal.message, [(b"retry-after", b"30")])
            return
        except DatabaseError:
            logger.exception("Streams: could not check a key.")
            await _error(
                send, 503, "The flag configuration is unavailable; retry shortly.", [(b"retry-after", b"5")]
            )
            return
        await self._serve(stream, scope, receive, send)

    async def _serve(self, stream, scope: Scope, receive: Receive, send: Send) -> None:
        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            stream.close()

        watcher = asyncio.get_running_loop().create_task(watch_disconnect())
        keepalive = float(settings.SDK_STREAM_KEEPALIVE_SECONDS)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
            if _header(scope, b"last-event-id") == stream.sent_version:
                stream.pending = None  # the client has this payload: nothing to resend
            first = stream.pending or KEEPALIVE  # something at once, so the client's onopen fires
            stream.pending = None
            stream.wake.clear()
            await send({"type": "http.response.body", "body": first, "more_body": True})
            while not stream.closed:
                try:
                    async with asyncio.timeout(keepalive):
                        await stream.wake.wait()
                except TimeoutError:
                    await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                    continue
                stream.wake.clear()
                event, stream.pending = stream.pending, None
                if event and not stream.closed:
                    await send({"type": "http.response.body", "body": event, "more_body": True})
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while we wrote
            pass
        finally:
            self.hub.leave(stream)
            watcher.cancel()
