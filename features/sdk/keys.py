"""The one SDK-key resolver: a raw key (header or path) to the client it stands for.

Every SDK request resolves its key here, once: the edge middleware (``features.sdk.middleware``)
resolves the header's key and leaves it on the request (``request.sdk_client``), and DRF's
authentication, OFREP, the ingestion views and the management endpoints' refusal read it from there
(``request_client``); the GrowthBook endpoints and the stream server resolve the key in their path
(``sdk_client_for_key``). A key found is recorded as used (in memory, with at most one database write
a minute per key).

The lookup (key hash -> SDK key id and environment) goes through the edge's one cache mechanism
(``features.sdk.cache.GenerationMemo``): in the process memo and in Django's cache, both keyed by the
configuration generation, which every change to an SDK key or an environment replaces. So a warm SDK
request reads no table, and a revoked key is refused at once by the process that revoked it and
within the generation check (a second) by every other. Unknown keys are memoised too (as unknown),
so guessing keys cannot load the database. While the database is down, a key this process has
checked before is answered as it was last checked; a key it never saw cannot be checked and its
request fails.

The browser origins an environment allows (CORS) travel with the client, so answering a browser
costs no query either (``features.sdk.cors``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from features.models import Environment, SdkKey, cors_origins_parse, hash_sdk_key
from features.sdk.cache import GenerationMemo, current_generation
from features.services import sdk_key_mark_used

__all__ = [
    "CLIENT_KEY_REFUSAL",
    "NOT_RESOLVED",
    "SdkClient",
    "request_client",
    "sdk_client_for_key",
    "sdk_key_from_request",
]


@dataclass(frozen=True)
class SdkClient:
    """The caller of an SDK endpoint: not a Django user, it can never touch configuration."""

    sdk_key_id: int
    environment: Environment
    # The configuration generation the key was checked under; ``config_get`` can reuse it.
    generation: str | None = field(default=None, compare=False)
    # The environment's allowed browser origins (``Environment.cors_allowed_origins``, parsed).
    cors_allowed_origins: tuple[str, ...] = ()
    # The first 16 hex digits of the key's hash: names the key in rate-limit counters (ids of rows
    # rolled back can come again on SQLite; a random key's hash does not).
    key_tag: str = ""
    # ``SdkKeyKind``: "secret" calls every SDK endpoint; "client" (publishable) only reads the payload.
    kind: str = "secret"
    # The key's GrowthBook payload encryption key (``SdkKey.encryption_key``): "" when not encrypted.
    encryption_key: str = field(default="", repr=False)

    @property
    def is_client_key(self) -> bool:
        return self.kind == "client"

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


CLIENT_KEY_REFUSAL = (
    "A client key (publishable, read-only) only reads the flags payload (GET /api/features/<key>) "
    "and asks for remote evaluation (POST /api/eval/<key>); "
    "assignments, evaluations, events, exposures and OFREP need a secret SDK key (sdk_...)."
)


def sdk_key_from_request(request: HttpRequest) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.META.get("HTTP_X_API_KEY") or None


def _lookup(hashed: str) -> dict[str, Any] | None:
    key = (
        SdkKey.objects.filter(hashed_key=hashed, revoked=False)
        .values(
            "pk",
            "environment_id",
            "environment__key",
            "environment__name",
            "environment__cors_allowed_origins",
            "kind",
            "encryption_key",
        )
        .first()
    )
    if key is None:
        return None
    return {
        "sdk_key_id": key["pk"],
        "environment_id": key["environment_id"],
        "environment_key": key["environment__key"],
        "environment_name": key["environment__name"],
        "cors_allowed_origins": list(cors_origins_parse(key["environment__cors_allowed_origins"])),
        "kind": key["kind"],
        "encryption_key": key["encryption_key"],
    }


def _client(found: dict[str, Any] | None, hashed: str, generation: str | None) -> SdkClient | None:
    if found is None:
        return None
    environment = Environment(
        id=found["environment_id"], key=found["environment_key"], name=found["environment_name"]
    )
    return SdkClient(
        sdk_key_id=found["sdk_key_id"],
        environment=environment,
        generation=generation,
        cors_allowed_origins=tuple(found["cors_allowed_origins"]),
        key_tag=hashed[:16],
        kind=found["kind"],
        encryption_key=found["encryption_key"],
    )


# key hash -> the client, or None for an unknown or revoked key
_clients: GenerationMemo[SdkClient | None] = GenerationMemo("flags:sdk-key:2", what="an SDK key")


def sdk_client_for_key(raw_key: str) -> SdkClient | None:
    """The client an SDK key stands for, or None for an unknown or revoked key; recorded as used."""
    hashed = hash_sdk_key(raw_key)
    generation = current_generation()
    client = _clients.get(
        hashed,
        lambda: _lookup(hashed),
        generation=generation,
        build=lambda found, previous, generation_: _client(found, hashed, generation_),
    )
    if client is None:
        return None
    if client.generation != generation:  # memoised before the cache went down: say so to config_get
        client = dataclasses.replace(client, generation=generation)
    sdk_key_mark_used(sdk_key_id=client.sdk_key_id, key_tag=client.key_tag)
    return client


NOT_RESOLVED: Any = object()


def request_client(request: HttpRequest) -> SdkClient | None:
    """The client of a request's header key (None without a key, or for an unknown or revoked one),
    resolved once per request: the edge middleware's answer when it gave one."""
    client = getattr(request, "sdk_client", NOT_RESOLVED)
    if client is NOT_RESOLVED:
        raw = sdk_key_from_request(request)
        client = sdk_client_for_key(raw) if raw is not None else None
        request.sdk_client = client
    return client
