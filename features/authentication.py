"""SDK-key authentication for the SDK endpoints (assign, evaluate, events, exposures, OFREP).

The lookup (key hash -> SDK key id and environment) is cached like the flag configuration
(``features.config``): in the process memo and in Django's cache, both keyed by the configuration
generation, which every change to an SDK key or an environment replaces. So a warm SDK request
reads no table, and a revoked key is refused at once by the process that revoked it and within the
generation check (a second) by every other. Unknown keys are
cached too (as unknown), so guessing keys cannot load the database.
"""

import time
from dataclasses import dataclass, field

from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from features import config
from features.models import Environment, SdkKey, hash_sdk_key


@dataclass(frozen=True)
class SdkClient:
    """The caller of an SDK endpoint: not a Django user, it can never touch configuration."""

    sdk_key_id: int
    environment: Environment
    # The configuration generation the key was checked under; ``config_get`` can reuse it.
    generation: str | None = field(default=None, compare=False)

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def has_perm(self, perm: str, obj=None) -> bool:
        return False


def sdk_key_from_request(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.META.get("HTTP_X_API_KEY") or None


MEMO_LIMIT = 10_000  # distinct key hashes remembered per process (guessed keys would grow it)

# key hash -> (generation, client or None for unknown/revoked, wall time of the database read)
_memo: dict[str, tuple[str | None, SdkClient | None, float]] = {}
config.on_invalidate(_memo.clear)


def _lookup(hashed: str) -> dict | None:
    key = (
        SdkKey.objects.filter(hashed_key=hashed, revoked=False)
        .values("pk", "environment_id", "environment__key", "environment__name")
        .first()
    )
    if key is None:
        return None
    return {
        "sdk_key_id": key["pk"],
        "environment_id": key["environment_id"],
        "environment_key": key["environment__key"],
        "environment_name": key["environment__name"],
    }


def sdk_client_for_key(raw_key: str) -> SdkClient | None:
    """The client an SDK key stands for, or None for an unknown or revoked key."""
    hashed = hash_sdk_key(raw_key)
    generation = config.current_generation()
    now = time.time()
    limit = config.max_age()
    hit = _memo.get(hashed)
    if hit is not None and (generation is None or hit[0] == generation) and now - hit[2] < limit:
        if hit[1] is None or hit[1].generation == generation:
            return hit[1]
        client = hit[1]
        return SdkClient(sdk_key_id=client.sdk_key_id, environment=client.environment, generation=generation)
    cache_key = f"flags:sdk-key:{generation}:{hashed}"
    entry = config.cache_call(cache.get, cache_key) if generation is not None else None
    if not isinstance(entry, dict):
        found = _lookup(hashed)
        entry = {"found": found, "read_at": now}
        if generation is not None:
            config.cache_call(cache.set, cache_key, entry, limit)
    found = entry["found"]
    client = None
    if found is not None:
        environment = Environment(
            id=found["environment_id"], key=found["environment_key"], name=found["environment_name"]
        )
        client = SdkClient(sdk_key_id=found["sdk_key_id"], environment=environment, generation=generation)
    if len(_memo) >= MEMO_LIMIT:
        _memo.clear()
    _memo[hashed] = (generation, client, entry["read_at"])
    return client


class SdkKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`; the key binds the request to one environment."""

    def authenticate(self, request):
        raw = sdk_key_from_request(request)
        if raw is None:
            return None
        client = sdk_client_for_key(raw)
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked SDK key.")
        return client, client.sdk_key_id

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="sdk"'


class SdkKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "features.authentication.SdkKeyAuthentication"
    name = "SdkKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An environment's SDK key, as `Authorization: Bearer <key>` (or `X-API-Key: <key>`). "
            "Make one in the admin or with `manage.py create_sdk_key <environment>`.",
        }
