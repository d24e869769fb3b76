"""What GrowthBook's endpoints share: the key in the path, any origin, and one way to refuse.

``GET /api/features/{client_key}`` (``features.sdk.payload``) and ``POST /api/eval/{client_key}``
(``features.sdk.remote_eval``) are called by GrowthBook's SDKs, which put the key (a client key,
publishable, or a secret SDK key) in the path and read errors as ``{"status", "error"}``. Both are
served by a lean ``dispatch`` on Django's request (like OFREP): DRF only documents them. Every answer
may be read by any origin (``Access-Control-Allow-Origin: *``: the key in the URL is the credential,
no cookie is involved), errors are never cached, and a preflight is answered here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from rest_framework.views import APIView

from features.sdk.auth import WWW_AUTHENTICATE
from features.sdk.cors import allow_any
from features.sdk.keys import SdkClient, sdk_client_for_key
from features.sdk.limits import BodyTooLarge, RateLimited

__all__ = ["BadRequest", "PathKeyView"]

logger = logging.getLogger(__name__)

UNKNOWN_KEY = (
    "Unknown or revoked key: make a client key with `manage.py create_sdk_key <environment> --client` "
    "or in the admin."
)


class BadRequest(ValueError):
    """Bad input: 400, the message names the field and says why."""


class PathKeyView(APIView):
    """A GrowthBook endpoint: subclasses say their methods and headers, and write ``answer``.

    ``answer`` may raise ``BadRequest`` (400), ``BodyTooLarge`` (413), ``RateLimited`` (429) or a
    ``DatabaseError`` (503, retry shortly); an unknown key in the path is a 401 (``client``).
    """

    authentication_classes: list = []
    permission_classes: list = []
    methods: tuple[str, ...] = ()  # answered; the first is the one a 405 names
    allow_headers = ""  # a preflight's Access-Control-Allow-Headers
    expose_headers = ""  # every answer's Access-Control-Expose-Headers
    name = ""  # for the log

    def dispatch(self, request: HttpRequest, *args: Any, client_key: str = "", **kwargs: Any) -> HttpResponse:
        if request.method == "OPTIONS":
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = f"{self.methods[0]}, OPTIONS"
            response["Access-Control-Allow-Headers"] = self.allow_headers
            response["Access-Control-Max-Age"] = "600"
            return allow_any(response, self.expose_headers)
        if request.method not in self.methods:
            return allow_any(HttpResponseNotAllowed([self.methods[0]]), self.expose_headers)
        try:
            response = self.answer(request, client_key)
        except BadRequest as error:
            return self.error(400, str(error))
        except BodyTooLarge as error:
            return self.error(413, f"{error}.")
        except RateLimited as error:
            return self.error(429, f"This key sent {error}", **{"Retry-After": str(error.retry_after)})
        except _Unauthorized:
            return self.error(401, UNKNOWN_KEY, **{"WWW-Authenticate": WWW_AUTHENTICATE})
        except DatabaseError:
            logger.exception("%s: no flag configuration available.", self.name)
            return self.error(
                503, "The flag configuration is unavailable; retry shortly.", **{"Retry-After": "5"}
            )
        return allow_any(response, self.expose_headers)

    def answer(self, request: HttpRequest, client_key: str) -> HttpResponse:
        raise NotImplementedError

    @staticmethod
    def client(client_key: str) -> SdkClient:
        """The client of the key in the path; a 401 for an unknown or revoked key."""
        client = sdk_client_for_key(client_key) if client_key else None
        if client is None:
            raise _Unauthorized
        return client

    def error(self, status: int, message: str, **headers: str) -> HttpResponse:
        body = json.dumps({"status": status, "error": message}).encode()
        response = HttpResponse(body, status=status, content_type="application/json", headers=headers)
        response["Cache-Control"] = "no-store"
        return allow_any(response, self.expose_headers)


class _Unauthorized(Exception):
    pass
