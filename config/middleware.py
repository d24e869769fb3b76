"""The edge of the SDK endpoints: body limits, per-key rate limits and CORS, in one middleware.

SDK views say who they are with ``sdk_endpoint = True`` on their class (``features.sdk_views``,
``analytics.ingestion.views``), so a new SDK endpoint gets the same edge by inheriting from them and
no list of paths has to be kept here. For them, in this order:

1. A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
   here. It carries no credentials, so it is allowed for any origin that some environment allows; the
   actual request then gets ``Access-Control-Allow-Origin`` only if its key's environment allows the
   origin, and the browser withholds the answer otherwise.
2. A body larger than ``SDK_MAX_BODY_BYTES`` (1 MiB) is refused with 413 before it is read.
3. The SDK key is looked up (``sdk_client_for_key``: from memory on a warm process, no query) and
   handed to the view as ``request.sdk_client``, so the key is looked up once per request.
4. The key's requests are counted (``SdkRateLimiter``); past ``SDK_RATE_LIMIT_PER_MINUTE`` the
   answer is 429 with ``Retry-After`` in seconds.

5. The lean lane: a view whose class says ``lean = True`` (OFREP, the hottest path) is resolved and
   called here, skipping the middleware below this one that it has no use for: sessions, CSRF (the
   views are exempt), the user, messages and the history context cost more than the evaluation and
   are never read by it. What those middleware do for every answer is kept, with Django's own code:
   ``CommonMiddleware`` (``DISALLOWED_USER_AGENTS``, the ``ALLOWED_HOSTS`` check, ``Content-Length``)
   and ``XFrameOptionsMiddleware``; errors are turned into answers as anywhere else, and the answer
   then gets CORS and the drain below like every SDK answer. ``LEAN_LANE_SKIPS`` names the middleware
   the lane leaves out: a test keeps it equal to what ``MIDDLEWARE`` lists after this one, so a new
   middleware must be placed, or accounted for, on purpose.

Every other view gets one check: a declared body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is
refused with 413 (Django applies that limit to forms, not to the JSON that DRF reads).

Every answer, early or not, is sent only once the request body has been read (``_drain_unread_body``):
an answer made before the body is read (the 413s above, a 401, a 429) otherwise loses the client's
next request on the same keep-alive connection ("connection closed without response"), or, when the
connection closes after the answer, resets it while the client is still sending.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.handlers.exception import convert_exception_to_response
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.urls import Resolver404, get_resolver
from django.utils.cache import patch_vary_headers

from features.authentication import SdkClient, cors_origins_any, sdk_client_for_key, sdk_key_from_request
from features.config import cache_call, cache_missing

logger = logging.getLogger(__name__)

CORS_ALLOW_METHODS = "POST, OPTIONS"
CORS_ALLOW_HEADERS = "Authorization, X-API-Key, Content-Type, If-None-Match"
CORS_EXPOSE_HEADERS = "ETag, Retry-After"
CORS_MAX_AGE = 600  # seconds a browser may reuse a preflight answer


# --- rate limits -------------------------------------------------------------------------------------------
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
    platform's availability matters more than the limit, and ``features.config.cache_call`` leaves
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


# --- CORS --------------------------------------------------------------------------------------------------
def _allowed_origin(origin: str, allowed: frozenset[str] | tuple[str, ...]) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for ``origin``, or None when it is not allowed."""
    if "*" in allowed:
        return "*"
    normalised = origin.strip().lower().rstrip("/")
    return origin if normalised in allowed else None


def _preflight(origin: str) -> HttpResponse:
    response = HttpResponse(status=204)
    patch_vary_headers(response, ("Origin",))
    allow = _allowed_origin(origin, cors_origins_any())
    if allow is not None:
        response["Access-Control-Allow-Origin"] = allow
        response["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
        response["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
    return response


def _add_cors_headers(request: HttpRequest, response: HttpResponse, origin: str) -> None:
    client: SdkClient | None = getattr(request, "sdk_client", None)
    # Without a client (no or a wrong key) the answer is an error: let any allowed page read it.
    allowed = client.cors_allowed_origins if client is not None else cors_origins_any()
    allow = _allowed_origin(origin, allowed)
    if allow != "*":
        patch_vary_headers(response, ("Origin",))
    if allow is not None:
        response["Access-Control-Allow-Origin"] = allow
        response["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS


# --- the middleware ----------------------------------------------------------------------------------------
def _error(view_class: type | None, status: int, message: str, headers: dict[str, str] | None = None):
    # OFREP's error bodies carry ``errorDetails``; the other SDK endpoints answer like DRF.
    key = "errorDetails" if getattr(view_class, "ofrep", False) else "detail"
    return HttpResponse(
        json.dumps({key: message}), status=status, headers=headers, content_type="application/json"
    )


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


# An early answer reads and discards at most this much of a body it did not need (the client sends it
# anyway); a larger one is left to the server.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
_DRAIN_CHUNK_BYTES = 64 * 1024


def _drain_unread_body(request: HttpRequest) -> None:
    """Read and discard what is left of the request body, before the answer is sent.

    gunicorn's threaded worker (``make serve``, the Dockerfile) reads a body the application left
    unread only after sending the answer, just before it hands the keep-alive connection back to its
    poller. A client that sends its next request as soon as it has the answer races that read: the
    read can take the next request's bytes into gunicorn's buffer, the poller then waits for a socket
    that has nothing more to say, and the connection is closed at the keep-alive timeout (2 s) with
    the request unanswered: "Remote end closed connection without response" (schemathesis' "Network
    Error"). And when the connection closes after the answer (``Connection: close``, HTTP/1.0), the
    kernel answers the body still arriving with a reset, and the client sending it sees "connection
    reset". Reading the body before answering avoids both, as when a view reads it.

    Only servers that end ``wsgi.input`` at the end of the body (the ``wsgi.input_terminated``
    extension, which gunicorn sets, also for chunked bodies) are read this way: on others (runserver)
    reading past the body would wait for the client.
    """
    if not request.META.get("wsgi.input_terminated"):
        return
    stream = request.META.get("wsgi.input")
    if stream is None or _declared_length(request) > DRAIN_MAX_BYTES:
        return
    left = DRAIN_MAX_BYTES
    try:
        while left > 0:
            chunk = stream.read(min(_DRAIN_CHUNK_BYTES, left))
            if not chunk:
                return
            left -= len(chunk)
    except Exception as exc:  # noqa: BLE001 - the answer stands; a client gone mid-body changes nothing
        logger.debug("Could not read the rest of a request body: %s", exc)


# The lean lane (module docstring, 5.): the paths it may serve, and the middleware it runs without.
LEAN_LANE_PREFIX = "/ofrep/"
LEAN_LANE_KEEPS = (
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
LEAN_LANE_SKIPS = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
)


class SdkEdgeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._common = CommonMiddleware(get_response)
        self._frame_options = XFrameOptionsMiddleware(get_response)
        # Errors in the lane become answers as they would below (404, 400 for a bad host, 500).
        self._lean = convert_exception_to_response(self._lean_response)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = None
        if request.path_info.startswith(LEAN_LANE_PREFIX):
            response = self._lean(request)
        if response is None:
            response = self.get_response(request)
        if getattr(request, "sdk_endpoint", False):
            origin = request.META.get("HTTP_ORIGIN")
            if origin:
                _add_cors_headers(request, response, origin)
        _drain_unread_body(request)
        return response

    def _lean_response(self, request: HttpRequest) -> HttpResponse | None:
        """The answer of a ``lean`` view, or None for any other path (the full stack then serves it)."""
        try:
            match = get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
        except Resolver404:
            return None
        if not getattr(getattr(match.func, "view_class", None), "lean", False):
            return None
        request.resolver_match = match
        response = self._common.process_request(request)  # user agents, ALLOWED_HOSTS, PREPEND_WWW
        if response is None:
            response = self.process_view(request, match.func, match.args, match.kwargs)
        if response is None:
            response = match.func(request, *match.args, **match.kwargs)
        response = self._common.process_response(request, response)  # Content-Length
        return self._frame_options.process_response(request, response)

    def process_view(
        self, request: HttpRequest, view_func: Callable, view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        view_class = getattr(view_func, "view_class", None)
        if not getattr(view_class, "sdk_endpoint", False):
            return self._general_body_limit(request)
        origin = request.META.get("HTTP_ORIGIN")
        if request.method == "OPTIONS" and origin and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META:
            return _preflight(origin)
        request.sdk_endpoint = True  # the answer gets CORS headers on the way out (``__call__``)
        limit = settings.SDK_MAX_BODY_BYTES
        if _declared_length(request) > limit:
            return _error(view_class, 413, f"The body is larger than {limit} bytes; send less at a time.")
        raw = sdk_key_from_request(request)
        if raw is None:
            return None  # the view answers 401 (or 403 for a user token)
        try:
            client = sdk_client_for_key(raw)
        except DatabaseError:
            return None  # the view meets the same error and answers it in its own way
        if client is None:
            return None
        request.sdk_client = client
        per_minute = settings.SDK_RATE_LIMIT_PER_MINUTE
        if per_minute > 0:
            retry_after = rate_limiter.hit(client.key_tag, per_minute)
            if retry_after is not None:
                return _error(
                    view_class,
                    429,
                    f"This SDK key sent more than {per_minute} requests this minute; "
                    f"retry in {retry_after} seconds.",
                    headers={"Retry-After": str(retry_after)},
                )
        return None

    @staticmethod
    def _general_body_limit(request: HttpRequest) -> HttpResponse | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None or request.content_type == "multipart/form-data":
            return None
        if _declared_length(request) > limit:
            return _error(None, 413, f"The body is larger than {limit} bytes.")
        return None
