"""SDK-key authentication for the SDK endpoints (assign, evaluate, events, exposures, OFREP).

The lookup (key hash -> SDK key id and environment) is cached like the flag configuration
(``features.config``): in the process memo and in Django's cache, both keyed by the configuration
generation, which every change to an SDK key or an environment replaces. So a warm SDK request
reads no table, and a revoked key is refused at once by the process that revoked it and within the
generation check (a second) by every other. Unknown keys are
cached too (as unknown), so guessing keys cannot load the database.

While the database is down, a key this process has checked before is answered as it was last
checked (like the flag configuration); a key it never saw cannot be checked and its request fails.

The browser origins an environment allows (CORS) travel with the cached client, so answering a
browser costs no query either (``config.middleware.SdkEdgeMiddleware``).
"""

import logging
import time
from dataclasses import dataclass, field

from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.db import DatabaseError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from features import config
from features.models import Environment, SdkKey, cors_origins_parse, hash_sdk_key
from features.services import sdk_key_mark_used

logger = logging.getLogger(__name__)


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


def sdk_client_for_key(raw_key: str) -> SdkClient | None:
    """The client an SDK key stands for, or None for an unknown or revoked key. Every SDK request
    resolves its key here (the edge middleware, DRF's authentication, OFREP), so a key found is
    recorded as used here: in memory, with at most one database write a minute per key."""
    client = _sdk_client_lookup(raw_key)
    if client is not None:
        sdk_key_mark_used(sdk_key_id=client.sdk_key_id, key_tag=client.key_tag)
    return client


def _sdk_client_lookup(raw_key: str) -> SdkClient | None:
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
        return SdkClient(
            sdk_key_id=client.sdk_key_id,
            environment=client.environment,
            generation=generation,
            cors_allowed_origins=client.cors_allowed_origins,
            key_tag=client.key_tag,
            kind=client.kind,
            encryption_key=client.encryption_key,
        )
    cache_key = f"flags:sdk-key:{generation}:{hashed}"
    entry = config.cache_call(cache.get, cache_key) if generation is not None else None
    if not isinstance(entry, dict):
        try:
            found = _lookup(hashed)
        except DatabaseError:
            if hit is None:
                raise
            # As the flag configuration does (``config_get``): better a key checked a minute ago than
            # no answer while the database is down. The next request tries the database again.
            logger.warning("Could not check an SDK key in the database; using the last answer.")
            return hit[1]
        entry = {"found": found, "read_at": now}
        if generation is not None:
            config.cache_call(cache.set, cache_key, entry, limit)
    found = entry["found"]
    client = None
    if found is not None:
        environment = Environment(
            id=found["environment_id"], key=found["environment_key"], name=found["environment_name"]
        )
        client = SdkClient(
            sdk_key_id=found["sdk_key_id"],
            environment=environment,
            generation=generation,
            # .get: an entry cached by an older release has no origins; it expires with its generation.
            cors_allowed_origins=tuple(found.get("cors_allowed_origins", ())),
            key_tag=hashed[:16],
            kind=found.get("kind", "secret"),
            encryption_key=found.get("encryption_key", ""),
        )
    if len(_memo) >= MEMO_LIMIT:
        _memo.clear()
    _memo[hashed] = (generation, client, entry["read_at"])
    return client


# generation -> (every environment's allowed origins, wall time of the database read)
_any_origins: tuple[str | None, frozenset[str], float] = (None, frozenset(), 0.0)


def cors_origins_any() -> frozenset[str]:
    """The browser origins allowed by at least one environment.

    A CORS preflight carries no credentials, so it cannot be matched with an environment: it is
    answered for any origin some environment allows, and the actual request is then answered with
    ``Access-Control-Allow-Origin`` only when its key's environment allows the origin. Cached in the
    process under the configuration generation, like the SDK keys; when the database is down the
    last answer (or none) is kept.
    """
    global _any_origins
    generation = config.current_generation()
    cached_generation, origins, read_at = _any_origins
    now = time.time()
    if (
        read_at
        and (generation is None or cached_generation == generation)
        and now - read_at < config.max_age()
    ):
        return origins
    try:
        texts = Environment.objects.values_list("cors_allowed_origins", flat=True)
        origins = frozenset(origin for text in texts for origin in cors_origins_parse(text))
    except DatabaseError:
        logger.warning("Could not read the allowed browser origins; keeping the last ones.")
        return origins
    _any_origins = (generation, origins, now)
    return origins


def _any_origins_clear() -> None:
    global _any_origins
    _any_origins = (None, frozenset(), 0.0)


config.on_invalidate(_any_origins_clear)


CLIENT_KEY_REFUSAL = (
    "A client key (publishable, read-only) only reads the flags payload (GET /api/features/<key>) "
    "and asks for remote evaluation (POST /api/eval/<key>); "
    "assignments, evaluations, events, exposures and OFREP need a secret SDK key (sdk_...)."
)


class SdkKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`; the key binds the request to one environment."""

    def authenticate(self, request):
        raw = sdk_key_from_request(request)
        if raw is None:
            return None
        # Looked up already by the SDK edge middleware (throttling, CORS) for this very request.
        client = getattr(request, "sdk_client", None) or sdk_client_for_key(raw)
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


class SdkKeyRefusal(authentication.BaseAuthentication):
    """Last among the management endpoints' authenticators: an SDK key is a credential, not a user's.

    Without it no authenticator there takes SDK keys, and DRF answers a valid key with 401
    "credentials were not provided". Recognised here, the request is authenticated as the key,
    standing for the anonymous user, whom no management permission admits: DRF answers 403 (a
    credential that is not allowed here), with ``refusal`` as the reason (``config.exceptions``).
    Unknown and revoked keys are not recognised: still 401. Public endpoints (the schema, the docs)
    stay public.
    """

    refusal = (
        "An SDK key only calls the SDK endpoints (/api/v1/assign, /api/v1/evaluate, /api/v1/events, "
        "/api/v1/exposures, /ofrep/v1/..., /api/features/<key>). Here, use a user's token "
        "(Authorization: Token <token>) or sign in."
    )

    def authenticate(self, request):
        raw = sdk_key_from_request(request)
        if raw is None:
            return None
        client = sdk_client_for_key(raw)
        if client is None:
            return None
        return AnonymousUser(), client


class SdkKeyRefusalScheme(OpenApiAuthenticationExtension):
    """Not a way in, so not a security scheme of the management operations."""

    target_class = "features.authentication.SdkKeyRefusal"
    name: list[str] = []

    def get_security_requirement(self, auto_schema):
        return None

    def get_security_definition(self, auto_schema):
        return []
