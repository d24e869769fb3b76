"""The edge of the SDK endpoints: body limits, per-key rate limits and CORS, in one middleware.

SDK views say who they are with ``sdk_endpoint = True`` on their class (``features.sdk.views``,
``features.sdk.ofrep``, ``analytics.ingestion.views``), so a new SDK endpoint gets the same edge by inheriting from them and
no list of paths has to be kept here. For them, in this order:

1. A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
   here. It carries no credentials, so it is allowed for any origin that some environment allows; the
   actual request then gets ``Access-Control-Allow-Origin`` only if its key's environment allows the
   origin, and the browser withholds the answer otherwise.
2. A body larger than ``SDK_MAX_BODY_BYTES`` (1 MiB) is refused with 413 before it is read
   (``features.sdk.limits.body_check``).
3. The SDK key is looked up (``features.sdk.keys.request_client``: from memory on a warm process, no
   query) and left on the request as ``request.sdk_client``, so the key is looked up once per request.
4. The key's requests are counted (``features.sdk.limits.rate_check``); past
   ``SDK_RATE_LIMIT_PER_MINUTE`` the answer is 429 with ``Retry-After`` in seconds.

5. The lean lane: a view whose class says ``lean = True`` (OFREP, the hottest path) is resolved and
   called here, skipping the middleware below this one that it has no use for: sessions, CSRF (the
   views are exempt), the user, messages and the history context cost more than the evaluation and
   are never read by it. What those middleware do for every answer is kept, with Django's own code:
   ``CommonMiddleware`` (``DISALLOWED_USER_AGENTS``, the ``ALLOWED_HOSTS`` check, ``Content-Length``)
   and ``XFrameOptionsMiddleware``; errors are turned into answers as anywhere else, and the answer
   then gets CORS and the drain below like every SDK answer. ``LEAN_LANE_SKIPS`` names the middleware
   the lane leaves out: a test keeps it equal to what ``MIDDLEWARE`` lists after this one, so a new
   middleware must be placed, or accounted for, on purpose.

Every other view gets one check, the same ``body_check``: a declared body larger than
``DATA_UPLOAD_MAX_MEMORY_SIZE`` is refused with 413 (Django applies that limit to forms, not to the
JSON that DRF reads).

Every answer, early or not, is sent only once the request body has been read (``_drain_unread_body``):
an answer made before the body is read (the 413s above, a 401, a 429) otherwise loses the client's
next request on the same keep-alive connection ("connection closed without response"), or, when the
connection closes after the answer, resets it while the client is still sending.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.urls import Resolver404, get_resolver

from features.sdk.cors import add_cors_headers, preflight
from features.sdk.keys import request_client, sdk_key_from_request
from features.sdk.limits import BodyTooLarge, RateLimited, body_check, declared_length, rate_check

logger = logging.getLogger(__name__)


def _error(view_class: type | None, status: int, message: str, headers: dict[str, str] | None = None):
    # OFREP's error bodies carry ``errorDetails``; the other SDK endpoints answer like DRF.
    key = "errorDetails" if getattr(view_class, "ofrep", False) else "detail"
    return HttpResponse(
        json.dumps({key: message}), status=status, headers=headers, content_type="application/json"
    )


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
    if stream is None or declared_length(request) > DRAIN_MAX_BYTES:
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
                add_cors_headers(request, response, origin)
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
            return preflight(origin)
        request.sdk_endpoint = True  # the answer gets CORS headers on the way out (``__call__``)
        try:
            body_check(request)
        except BodyTooLarge as exc:
            return _error(view_class, 413, f"{exc}; send less at a time.")
        if sdk_key_from_request(request) is None:
            return None  # the view answers 401 (or 403 for a user token)
        try:
            client = request_client(request)
        except DatabaseError:
            return None  # the view meets the same error and answers it in its own way
        if client is None:
            return None
        try:
            rate_check(client)
        except RateLimited as exc:
            return _error(
                view_class, 429, f"This SDK key sent {exc}", headers={"Retry-After": str(exc.retry_after)}
            )
        return None

    @staticmethod
    def _general_body_limit(request: HttpRequest) -> HttpResponse | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None or request.content_type == "multipart/form-data":
            return None
        try:
            body_check(request, limit)
        except BodyTooLarge as exc:
            return _error(None, 413, f"{exc}.")
        return None
