"""SDK-key authentication for DRF: the SDK endpoints' authenticator and permission, and the
management endpoints' refusal of SDK keys. The key itself is resolved by ``features.sdk.keys``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission

from features.sdk.keys import CLIENT_KEY_REFUSAL, SdkClient, request_client, sdk_key_from_request

__all__ = ["IsSdkClient", "SdkKeyAuthentication", "SdkKeyRefusal"]

WWW_AUTHENTICATE = 'Bearer realm="sdk"'


def _django_request(request: Any) -> Any:
    return getattr(request, "_request", request)  # DRF's Request wraps Django's


class SdkKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`; the key binds the request to one environment."""

    def authenticate(self, request: Any) -> tuple[SdkClient, int] | None:
        if sdk_key_from_request(request) is None:
            return None
        client = request_client(_django_request(request))
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked SDK key.")
        return client, client.sdk_key_id

    def authenticate_header(self, request: Any) -> str:
        return WWW_AUTHENTICATE


class SdkKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "features.sdk.auth.SdkKeyAuthentication"
    name = "SdkKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An environment's SDK key, as `Authorization: Bearer <key>` (or `X-API-Key: <key>`). "
            "Make one in the admin or with `manage.py create_sdk_key <environment>`.",
        }


class IsSdkClient(BasePermission):
    """SDK endpoints: the caller authenticated with an environment's secret SDK key (not a user).

    A client key (publishable, read-only) is a valid credential refused here: 403 with the reason.
    """

    message = CLIENT_KEY_REFUSAL

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return isinstance(user, SdkClient) and not user.is_client_key


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

    def authenticate(self, request: Any) -> tuple[AnonymousUser, SdkClient] | None:
        if sdk_key_from_request(request) is None:
            return None
        client = request_client(_django_request(request))
        if client is None:
            return None
        return AnonymousUser(), client


class SdkKeyRefusalScheme(OpenApiAuthenticationExtension):
    """Not a way in, so not a security scheme of the management operations."""

    target_class = "features.sdk.auth.SdkKeyRefusal"
    name: list[str] = []

    def get_security_requirement(self, auto_schema: Any) -> None:
        return None

    def get_security_definition(self, auto_schema: Any) -> list:
        return []
