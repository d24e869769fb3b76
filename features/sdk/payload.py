"""``GET /api/features/{client_key}``: an environment's flags as GrowthBook's SDK payload.

GrowthBook's SDKs (any language) are pointed at this host with a key and evaluate the payload
locally (``features.growthbook``). Client keys (publishable) and secret SDK keys both read it; the
key travels in the path, as GrowthBook's SDKs send it (``features.sdk.path_key``).

Served from the compiled per-environment configuration (``features.config``): a warm request reads
no table. The body is built once per process and configuration (generation and version) and kept.

``dateUpdated`` moves exactly when the payload an environment serves changes: the features are
hashed (their plain JSON, before any encryption), and the environment's last (hash, date) is kept in
the cache, shared by every process. A payload whose hash differs from the last one gets a new date,
later than the last by at least a millisecond (the JavaScript SDK ignores a payload whose date did
not move, so a real change must move it); a change elsewhere (another environment, a metric, an SDK
key, a draft experiment) renews the generation but not the hash, and the date stays. The ``ETag`` is
a hash of the content hash, the date and the encryption key's tag, so it moves with them and only
with them.
``If-None-Match`` answers 304. Any origin may read it, and shared caches may keep it a few seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema

from features.config import config_get
from features.encryption import encrypt
from features.evaluation import CompiledConfig
from features.growthbook import features_payload
from features.sdk import streaming
from features.sdk.cache import VersionMemo, cache_call, cache_missing
from features.sdk.path_key import PathKeyView

CACHE_CONTROL = "public, max-age=10"
DATE_TTL = 30 * 24 * 3600  # seconds an environment's last payload date is remembered in the cache

# (environment id, generation, version, encryption key) -> (body, etag)
_bodies: VersionMemo[tuple[bytes, str]] = VersionMemo()


def _moment(when: float) -> str:
    moment = dt.datetime.fromtimestamp(when, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload_date(environment_id: int, content_hash: str, built_at: float) -> float:
    """When the environment first served the payload whose features hash to ``content_hash``, since
    the payload it served before (unix time); ``built_at`` (when the configuration was read from the
    database) when the cache is unreachable.

    The environment's last (hash, date, built_at) is kept under one cache key. A new hash is dated by
    a claim keyed by the hash and the date it follows (``cache.add``: the first process wins, and
    every process moving from the same last payload to the same new one agrees on its date), so a
    payload that comes back (A, B, then A again) gets a date later than B's. A process still serving
    a configuration read before the one last dated (its generation is checked once a second) serves
    older content: it gets that content's own date (or one just before the last), and never moves
    the last date, so the dates of newer content do not change under the SDKs.
    """
    last_key = f"flags:payload-date:{environment_id}"
    last = cache_call(cache.get, last_key)
    if isinstance(last, dict) and last.get("hash") == content_hash:
        return last["date"]
    if cache_missing(last):
        return built_at
    if not isinstance(last, dict):
        last = {"hash": "", "date": 0.0, "built_at": 0.0}
    dated_key = f"flags:payload-date:{environment_id}:{content_hash}"
    if built_at < last.get("built_at", 0.0):  # older content than the payload last dated
        dated = cache_call(cache.get, dated_key)
        return dated if isinstance(dated, float) else last["date"] - 0.001
    candidate = max(time.time(), last["date"] + 0.001)
    claim_key = f"{dated_key}:{last['date']!r}"
    if cache_call(cache.add, claim_key, candidate, DATE_TTL) is True:
        cache_call(
            cache.set, last_key, {"hash": content_hash, "date": candidate, "built_at": built_at}, DATE_TTL
        )
        cache_call(cache.set, dated_key, candidate, DATE_TTL)
        return candidate
    claimed = cache_call(cache.get, claim_key)
    return claimed if isinstance(claimed, float) else candidate


def payload_body(config_: CompiledConfig, encryption_key: str = "") -> tuple[bytes, str]:
    """The payload of a compiled configuration and its ETag, built once per process and version.

    With an ``encryption_key`` (the SDK key's, ``features.encryption``) the features travel as
    GrowthBook's ``encryptedFeatures`` and ``features`` is empty.
    """
    memo_key = (config_.environment_id, config_.generation, config_.version, encryption_key)
    return _bodies.get(memo_key, lambda: _payload_build(config_, encryption_key))


def _payload_build(config_: CompiledConfig, encryption_key: str) -> tuple[bytes, str]:
    snapshot = config_.snapshot or {}
    running = {
        key for key, experiment in config_.experiments.items() if experiment.running and not experiment.error
    }
    broken = {key for key, feature in config_.features.items() if feature.error is not None}
    features = features_payload(snapshot, running=running, broken=broken)
    plaintext = json.dumps(features, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    content_hash = hashlib.sha256(plaintext.encode()).hexdigest()
    date_updated = _moment(payload_date(config_.environment_id, content_hash, config_.built_at))
    payload: dict[str, Any] = {"status": 200, "features": features, "dateUpdated": date_updated}
    if encryption_key:
        payload["features"] = {}
        payload["encryptedFeatures"] = encrypt(
            json.dumps(features, ensure_ascii=False, separators=(",", ":")), encryption_key
        )
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    key_tag = hashlib.sha256(encryption_key.encode()).hexdigest()[:16] if encryption_key else ""
    etag_text = f"{content_hash}|{date_updated}|{key_tag}"
    etag = '"' + hashlib.sha256(etag_text.encode()).hexdigest()[:24] + '"'
    return body, etag


def _etag_matches(header: str, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return etag in candidates


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


class GrowthBookPayloadView(PathKeyView):
    methods = ("GET", "HEAD")
    allow_headers = "If-None-Match, Cache-Control"
    expose_headers = "ETag"
    name = "GrowthBook payload"

    def answer(self, request: HttpRequest, client_key: str) -> HttpResponse:
        client = self.client(client_key)
        config_ = config_get(client.environment.id, generation=client.generation)
        body, etag = payload_body(config_, client.encryption_key)
        if _etag_matches(request.META.get("HTTP_IF_NONE_MATCH", ""), etag):
            response = HttpResponse(status=304)
        else:
            response = HttpResponse(body, content_type="application/json")
        response["ETag"] = etag
        response["Cache-Control"] = CACHE_CONTROL
        if streaming.advertised():  # GET /sub/{key} is served (features.sdk.streaming)
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
        "`Access-Control-Allow-Origin: *`; `dateUpdated` and the `ETag` change when, and only when, the payload does. "
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
