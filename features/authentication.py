"""SDK-key authentication for the SDK endpoints (assign, evaluate, events, exposures, OFREP)."""

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from features.models import Environment, SdkKey, hash_sdk_key


@dataclass(frozen=True)
class SdkClient:
    """The caller of an SDK endpoint: not a Django user, it can never touch configuration."""

    sdk_key_id: int
    environment: Environment

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


class SdkKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`; the key binds the request to one environment."""

    def authenticate(self, request):
        raw = sdk_key_from_request(request)
        if raw is None:
            return None
        key = (
            SdkKey.objects.select_related("environment")
            .filter(hashed_key=hash_sdk_key(raw), revoked=False)
            .first()
        )
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked SDK key.")
        return SdkClient(sdk_key_id=key.pk, environment=key.environment), key

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
