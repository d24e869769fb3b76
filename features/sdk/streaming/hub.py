"""The open streams of one process, their limits, and the rebuild that feeds them after a change.

Runs on the stream server's event loop. Database and cache work (checking keys, building payloads)
runs in Django's thread-sensitive executor (``asgiref.sync.sync_to_async``): one thread, so the
event loop never blocks on I/O and the stream server holds one database connection, not one per
stream. After a change, each environment that has streams is rebuilt once, whatever its number of
streams, and the key of every open stream is checked again: a revoked key's streams are closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections

from features.config import config_get
from features.models import Environment
from features.sdk.cache import generation_refresh
from features.sdk.keys import SdkClient, sdk_client_for_key
from features.sdk.payload import payload_body

logger = logging.getLogger(__name__)

# Seconds between re-checks when no change was announced: covers a notification lost while Redis
# restarted, and writes that bypass the model layer (once the configuration's max age has passed).
RECHECK_SECONDS = 5.0
# After a notification, wait this long for the rest of the burst: one save in the admin invalidates
# once per row written, before and after its commit.
DEBOUNCE_SECONDS = 0.05


def sse_event(body: bytes, version: str) -> bytes:
    """The payload as one server-sent event ``features``, its ``id`` the configuration's version.

    The version is a hash of the configuration's content (``features.config``): a client that
    reconnects with it as ``Last-Event-ID`` has the current flags.

    The JSON is split into ``data:`` lines, one per feature (an event joins its data lines with a
    newline, which JSON allows between tokens): the Python SDK reads the stream line by line with
    aiohttp, which refuses lines longer than 128 KiB, and a payload of some hundred flags is longer.
    """
    payload: dict[str, Any] = json.loads(body)

    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    lines = ["{"]
    items = list(payload.items())
    for index, (name, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if name == "features" and isinstance(value, dict) and value:
            lines.append(f"{dumps(name)}:{{")
            features = list(value.items())
            for position, (key, feature) in enumerate(features):
                lines.append(f"{dumps(key)}:{dumps(feature)}" + ("," if position < len(features) - 1 else ""))
            lines.append("}" + comma)
        else:
            lines.append(f"{dumps(name)}:{dumps(value)}{comma}")
    lines.append("}")
    text = f"id: {version}\nevent: features\n" + "".join(f"data: {line}\n" for line in lines)
    return (text + "\n").encode()


@dataclass(eq=False)
class Stream:
    """One open stream: the version it was last sent, and a wake-up for the coroutine that writes it."""

    key: str
    # (environment id, the key's payload encryption key or ""): streams sharing it get the same events
    channel: tuple[int, str]
    sent_version: str | None = None
    pending: bytes | None = None
    closed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, version: str, event: bytes) -> None:
        if version != self.sent_version:
            self.sent_version = version
            self.pending = event
            self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class StreamRefused(Exception):
    """A stream over a limit: the status (429 or 503) and the reason sent to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Opening:
    """What checking a key at connection found: the client (None: unknown or revoked) and its payload."""

    client: SdkClient | None
    version: str = ""
    body: bytes = b""


def _connections_refresh() -> None:
    """What Django does before each request: close connections past ``CONN_MAX_AGE`` or broken, so
    the stream server's long-lived thread reconnects. A connection inside a transaction is in use
    (a test's, which calls the app from its own thread) and is left alone."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _connections_close() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def _open(key: str) -> Opening:
    _connections_refresh()
    client = sdk_client_for_key(key)
    if client is None:
        return Opening(client=None)
    try:
        compiled = config_get(client.environment.id, generation=client.generation)
    except Environment.DoesNotExist:  # deleted since the key was cached
        return Opening(client=None)
    return Opening(
        client=client, version=compiled.version, body=payload_body(compiled, client.encryption_key)[0]
    )


def _rebuild(
    channels: list[tuple[int, str]], keys: list[str]
) -> tuple[dict[tuple[int, str], tuple[str, bytes] | None], set[str]]:
    """Each channel's (version, payload) now (None: the environment is gone), and the keys no
    longer valid. A channel is an environment and an encryption key ("" for plain payloads)."""
    _connections_refresh()
    generation = generation_refresh()
    payloads: dict[tuple[int, str], tuple[str, bytes] | None] = {}
    for channel in channels:
        environment_id, encryption_key = channel
        try:
            compiled = config_get(environment_id, generation=generation)
            body = payload_body(compiled, encryption_key)[0]
        except Environment.DoesNotExist:
            payloads[channel] = None
        except DatabaseError:
            logger.exception(
                "Streams: could not rebuild environment %s; keeping its last payload.", environment_id
            )
        else:
            payloads[channel] = (compiled.version, body)
    revoked = set()
    for key in keys:
        try:
            if sdk_client_for_key(key) is None:
                revoked.add(key)
        except DatabaseError:
            logger.warning("Streams: could not check a key; keeping its streams open.")
    return payloads, revoked


class Hub:
    """The streams of this process by environment and by key; ``run`` keeps them up to date."""

    def __init__(self) -> None:
        self._by_environment: dict[tuple[int, str], set[Stream]] = defaultdict(set)
        self._by_key: dict[str, set[Stream]] = defaultdict(set)
        # environment id -> (configuration version, event). Compared by version, not by the body:
        # every invalidation (another environment's change, a new key, the commit after the write)
        # moves the payload's dateUpdated, and streams need only what changes their flags.
        self._current: dict[tuple[int, str], tuple[str, bytes]] = {}
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rebuilds = 0

    # --- limits and membership ---------------------------------------------------------------------

    @property
    def count(self) -> int:
        return sum(len(streams) for streams in self._by_environment.values())

    def check_capacity(self) -> None:
        """Refuse before any work when this process holds ``SDK_STREAM_MAX_CONNECTIONS`` streams."""
        limit = settings.SDK_STREAM_MAX_CONNECTIONS
        if self.count >= limit:
            raise StreamRefused(
                503,
                f"This stream server holds its maximum of {limit} streams (SDK_STREAM_MAX_CONNECTIONS); "
                "retry later or add stream processes.",
            )

    def admit(self, key: str, opening: Opening) -> Stream:
        """Register a stream for a checked key, within the limits; its first event is queued."""
        assert opening.client is not None
        self.check_capacity()
        limit = settings.SDK_STREAM_MAX_PER_KEY
        if len(self._by_key.get(key, ())) >= limit:
            raise StreamRefused(
                429,
                f"This key already has {limit} open streams on this server (SDK_STREAM_MAX_PER_KEY); "
                "close some or retry later.",
            )
        channel = (opening.client.environment.id, opening.client.encryption_key)
        stream = Stream(key=key, channel=channel)
        self._by_environment[channel].add(stream)
        self._by_key[key].add(stream)
        current = self._current.get(channel)
        if current is None:
            current = (opening.version, sse_event(opening.body, opening.version))
            self._current[channel] = current
        elif current[0] != opening.version:
            # The key's check and the last rebuild saw different configurations: rebuild now, and
            # the stream gets whichever is current if it differs from what it was first sent.
            self.notify()
        stream.push(*current)
        return stream

    def leave(self, stream: Stream) -> None:
        for index, name in ((self._by_environment, stream.channel), (self._by_key, stream.key)):
            members = index.get(name)
            if members is not None:
                members.discard(stream)
                if not members:
                    del index[name]
        if stream.channel not in self._by_environment:
            self._current.pop(stream.channel, None)

    def close_all(self) -> None:
        for streams in list(self._by_environment.values()):
            for stream in list(streams):
                stream.close()

    async def release_connections(self) -> None:
        """Close the database thread's connections (the server is stopping)."""
        await sync_to_async(_connections_close)()

    # --- changes -------------------------------------------------------------------------------------

    def notify(self) -> None:
        """Something changed: rebuild soon (on the event loop's thread)."""
        self._changed.set()

    def notify_threadsafe(self) -> None:
        """``notify`` from any thread (the change listener runs in whichever thread wrote)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._changed.set)
        except RuntimeError:  # the loop closed in between
            pass

    async def open(self, key: str) -> Opening:
        """Check a key and read its environment's payload (in the database thread)."""
        return await sync_to_async(_open)(key)

    async def run(self) -> None:
        """Rebuild after each notification (coalesced) and every ``RECHECK_SECONDS``, until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(RECHECK_SECONDS):
                    await self._changed.wait()
                await asyncio.sleep(DEBOUNCE_SECONDS)
            except TimeoutError:
                pass
            self._changed.clear()
            if not self._by_environment:
                continue
            try:
                payloads, revoked = await sync_to_async(_rebuild)(
                    list(self._by_environment), list(self._by_key)
                )
            except Exception:  # noqa: BLE001 - the loop must outlive any one failed rebuild
                logger.exception("Streams: rebuilding the payloads failed; retrying at the next change.")
                continue
            self.rebuilds += 1
            self._apply(payloads, revoked)

    def _apply(self, payloads: dict[tuple[int, str], tuple[str, bytes] | None], revoked: set[str]) -> None:
        for key in revoked:
            for stream in list(self._by_key.get(key, ())):
                stream.close()
        for channel, built in payloads.items():
            streams = self._by_environment.get(channel)
            if not streams:
                continue
            if built is None:
                for stream in list(streams):
                    stream.close()
                continue
            version, body = built
            current = self._current.get(channel)
            if current is None or current[0] != version:
                current = (version, sse_event(body, version))
                self._current[channel] = current
            for stream in streams:
                stream.push(*current)
