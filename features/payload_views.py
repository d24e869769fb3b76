"""``GET /api/features/{client_key}``: an environment's flags as GrowthBook's SDK payload.

GrowthBook's SDKs (any language) are pointed at this host with a key and evaluate the payload
locally (``features.growthbook``). Client keys (publishable) and secret SDK keys both read it; the
key travels in the path, as GrowthBook's SDKs send it.

Served from the compiled per-environment configuration (``features.config``): a warm request reads
no table. The body is built once per process and configuration (generation and version) and kept.
``dateUpdated`` is the first time any process served that configuration (a cache ``add`` shared
through Redis; later than the previous one's), so it changes with every change and stays put
otherwise; the ``ETag`` is a hash of
the body and ``If-None-Match`` answers 304. Any origin may read it (``Access-Control-Allow-Origin:
*``: the key in the URL is the credential, no cookie is involved), and shared caches may keep it a
few seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from typing import Any

from django.core.cache import cache
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.views import APIView

from features import config, streaming
from features.authentication import SdkKeyAuthentication, sdk_client_for_key
from features.config import config_get
from features.encryption import encrypt
from features.evaluation import CompiledConfig
from features.growthbook import features_payload

logger = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=10"
DATE_TTL = 7 * 24 * 3600  # seconds a configuration's first-served date is remembered in the cache
MEMO_LIMIT = 64

# (environment id, generation, version, encryption key) -> (body, etag)
_memo: dict[tuple[int, str | None, str, str], tuple[bytes, str]] = {}
config.on_invalidate(_memo.clear)


def _date_updated(config_: CompiledConfig) -> str:
    """When this configuration was first served, as GrowthBook's ISO ``dateUpdated`` (UTC, ms).

    Later than the environment's previous configuration's by at least a millisecond, so that an SDK
    that ignores a payload whose date did not move (the JavaScript SDK) always takes a change.
    """
    when = config_.built_at
    if config_.generation is not None:
        key = f"flags:payload-date:{config_.environment_id}:{config_.generation}:{config_.version}"
        stored = config.cache_call(cache.get, key)
        if stored is None:
            last_key = f"flags:payload-date:{config_.environment_id}:last"
            last = config.cache_call(cache.get, last_key)
            candidate = time.time()
            if isinstance(last, int | float):
                candidate = max(candidate, last + 0.001)
            if config.cache_call(cache.add, key, candidate, DATE_TTL) is True:
                config.cache_call(cache.set, last_key, candidate, DATE_TTL)
            stored = config.cache_call(cache.get, key)
        if isinstance(stored, int | float):
            when = stored
    moment = dt.datetime.fromtimestamp(when, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload_body(config_: CompiledConfig, encryption_key: str = "") -> tuple[bytes, str]:
    """The payload of a compiled configuration and its ETag, built once per process and version.

    With an ``encryption_key`` (the SDK key's, ``features.encryption``) the features travel as
    GrowthBook's ``encryptedFeatures`` and ``features`` is empty.
    """
    memo_key = (config_.environment_id, config_.generation, config_.version, encryption_key)
    hit = _memo.get(memo_key)
    if hit is not None:
        return hit
    snapshot = config_.snapshot or {}
    running = {
        key for key, experiment in config_.experiments.items() if experiment.running and not experiment.error
    }
    broken = {key for key, feature in config_.features.items() if feature.error is not None}
    payload: dict[str, Any] = {
        "status": 200,
        "features": features_payload(snapshot, running=running, broken=broken),
        "dateUpdated": _date_updated(config_),
    }
    if encryption_key:
        plaintext = json.dumps(payload["features"], ensure_ascii=False, separators=(",", ":"))
        payload["features"] = {}
        payload["encryptedFeatures"] = encrypt(plaintext, encryption_key)
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
    if len(_memo) >= MEMO_LIMIT:
        _memo.clear()
    _memo[memo_key] = (body, etag)
    return body, etag


def _etag_matches(header: str, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return etag in candidates


def _cors(response: HttpResponse) -> HttpResponse:
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Expose-Headers"] = "ETag"
    return response


def _error(status: int, message: str, **headers: str) -> HttpResponse:
    body = json.dumps({"status": status, "error": message}).encode()
    response = HttpResponse(body, status=status, content_type="application/json", headers=headers)
    response["Cache-Control"] = "no-store"
    return _cors(response)


PAYLOAD_EXAMPLE = {
    "status": 200,
    "features": {
        "new_checkout": {
            "defaultValue": False,
            "rules": [
                {"condition": {"country": "US"}, "force": True},
                {
                    "force": True,
                    "coverage": 0.25,
                    "hashAttribute": "id",
                    "seed": "new_checkout",
                    "hashVersion": 2,
                },
            ],
        },
        "button_color": {
            "defaultValue": "blue",
            "rules": [
                {
                    "key": "checkout_button",
                    "variations": ["blue", "green"],
                    "weights": [0.5, 0.5],
                    "coverage": 1.0,
                    "hashAttribute": "id",
                    "hashVersion": 2,
                    "seed": "checkout_button",
                    "meta": [{"key": "control", "name": "Control"}, {"key": "treatment", "name": "Green"}],
                    "name": "Checkout button",
                    "phase": "0",
                }
            ],
        },
    },
    "dateUpdated": "2026-12-06T23:00:00.000Z",
}


class GrowthBookPayloadView(APIView):
    """Lean ``dispatch`` on Django's request (like OFREP): DRF only documents it."""

    authentication_classes: list = []
    permission_classes: list = []

    def dispatch(self, request: HttpRequest, *args: Any, client_key: str = "", **kwargs: Any) -> HttpResponse:
        if request.method == "OPTIONS":
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = "GET, OPTIONS"
            response["Access-Control-Allow-Headers"] = "If-None-Match, Cache-Control"
            response["Access-Control-Max-Age"] = "600"
            return _cors(response)
        if request.method not in ("GET", "HEAD"):
            return _cors(HttpResponseNotAllowed(["GET"]))
        try:
            client = sdk_client_for_key(client_key) if client_key else None
            if client is None:
                return _error(
                    401,
                    "Unknown or revoked key: make a client key with `manage.py create_sdk_key <environment> "
                    "--client` or in the admin.",
                    **{"WWW-Authenticate": SdkKeyAuthentication().authenticate_header(None)},
                )
            config_ = config_get(client.environment.id, generation=client.generation)
            body, etag = payload_body(config_, client.encryption_key)
        except DatabaseError:
            logger.exception("GrowthBook payload: no flag configuration available.")
            return _error(
                503, "The flag configuration is unavailable; retry shortly.", **{"Retry-After": "5"}
            )
        if _etag_matches(request.META.get("HTTP_IF_NONE_MATCH", ""), etag):
            response = HttpResponse(status=304)
        else:
            response = HttpResponse(body, content_type="application/json")
        response["ETag"] = etag
        response["Cache-Control"] = CACHE_CONTROL
        _cors(response)
        if streaming.advertised():  # GET /sub/{key} is served (features.streaming)
            response["x-sse-support"] = "enabled"
            response["Access-Control-Expose-Headers"] = "ETag, x-sse-support"
        return response

    @extend_schema(
        operation_id="growthbook_features",
        summary="GrowthBook SDK payload",
        description="The key's environment's flags and running experiments in GrowthBook's SDK format "
        "(`features` with `defaultValue` and `rules`), for GrowthBook's SDKs to evaluate locally: point "
        "them at this host (`apiHost`) with the key (`clientKey`). Readable with a client key "
        "(publishable, `pk_...`) or a secret SDK key (`sdk_...`); the key is in the path. Units hash on "
        "each rule's `hashAttribute` (`id`, the unit id, unless the experiment or rollout says otherwise). `ETag` with `If-None-Match` answers 304; "
        "`Access-Control-Allow-Origin: *`; `dateUpdated` changes with every change. "
        "A key made with encryption answers `encryptedFeatures` (AES-128-CBC, the SDK's "
        "`decryptionKey`) and an empty `features`. "
        "`x-sse-support: enabled` where `GET /sub/{client_key}` streams changes (server-sent events).",
        tags=["sdk"],
        auth=[],
        parameters=[
            OpenApiParameter(
                "client_key", OpenApiTypes.STR, OpenApiParameter.PATH, description="A client or SDK key."
            )
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The payload.",
                examples=[OpenApiExample("Payload", value=PAYLOAD_EXAMPLE)],
            ),
            304: OpenApiResponse(description="Unchanged since the `If-None-Match` ETag (no body)."),
            401: OpenApiResponse(description="An unknown or revoked key (JSON `error`)."),
            503: OpenApiResponse(description="The flag configuration is unavailable; retry shortly."),
        },
    )
    def get(self, request, client_key: str):  # pragma: no cover - dispatch answers; for the schema only
        raise NotImplementedError
