"""CORS for the SDK endpoints.

Header-keyed endpoints (assign, evaluate, OFREP, events, exposures): a preflight (``OPTIONS`` with
``Origin`` and ``Access-Control-Request-Method``) carries no credentials, so it cannot be matched with
an environment: it is answered for any origin some environment allows (``cors_origins_any``); the
actual request then gets ``Access-Control-Allow-Origin`` only when its key's environment allows the
origin (``SdkClient.cors_allowed_origins``), and the browser withholds the answer otherwise.

Path-keyed endpoints (GrowthBook's payload and remote evaluation): any origin
(``Access-Control-Allow-Origin: *``, ``allow_any``): the key in the URL is the credential, no cookie
is involved.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from features.models import Environment, cors_origins_parse
from features.sdk.cache import GenerationMemo
from features.sdk.keys import SdkClient

__all__ = ["add_cors_headers", "allow_any", "cors_origins_any", "preflight"]

logger = logging.getLogger(__name__)

CORS_ALLOW_METHODS = "POST, OPTIONS"
CORS_ALLOW_HEADERS = "Authorization, X-API-Key, Content-Type, If-None-Match"
CORS_EXPOSE_HEADERS = "ETag, Retry-After"
CORS_MAX_AGE = 600  # seconds a browser may reuse a preflight answer

_origins: GenerationMemo[frozenset[str]] = GenerationMemo(
    "flags:cors-origins", shared=False, what="the allowed browser origins"
)


def _origins_read() -> frozenset[str]:
    texts = Environment.objects.values_list("cors_allowed_origins", flat=True)
    return frozenset(origin for text in texts for origin in cors_origins_parse(text))


def cors_origins_any() -> frozenset[str]:
    """The browser origins allowed by at least one environment (for preflights and key-less errors)."""
    try:
        return _origins.get("any", _origins_read)
    except DatabaseError:  # never read, and the database is down: no origin is known to be allowed
        logger.warning("Could not read the allowed browser origins.")
        return frozenset()


def allowed_origin(origin: str, allowed: frozenset[str] | tuple[str, ...]) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for ``origin``, or None when it is not allowed."""
    if "*" in allowed:
        return "*"
    normalised = origin.strip().lower().rstrip("/")
    return origin if normalised in allowed else None


def preflight(origin: str) -> HttpResponse:
    """A header-keyed endpoint's answer to a CORS preflight."""
    response = HttpResponse(status=204)
    patch_vary_headers(response, ("Origin",))
    allow = allowed_origin(origin, cors_origins_any())
    if allow is not None:
        response["Access-Control-Allow-Origin"] = allow
        response["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
        response["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
    return response


def add_cors_headers(request: HttpRequest, response: HttpResponse, origin: str) -> None:
    """A header-keyed endpoint's answer, readable by ``origin`` when the key's environment allows it."""
    client: SdkClient | None = getattr(request, "sdk_client", None)
    # Without a client (no or a wrong key) the answer is an error: let any allowed page read it.
    allowed = client.cors_allowed_origins if client is not None else cors_origins_any()
    allow = allowed_origin(origin, allowed)
    if allow != "*":
        patch_vary_headers(response, ("Origin",))
    if allow is not None:
        response["Access-Control-Allow-Origin"] = allow
        response["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS


def allow_any(response: HttpResponse, expose: str) -> HttpResponse:
    """A path-keyed endpoint's answer, readable by any origin, with the headers in ``expose`` (unless
    the answer already says which)."""
    response["Access-Control-Allow-Origin"] = "*"
    response.setdefault("Access-Control-Expose-Headers", expose)
    return response
