from rest_framework.permissions import BasePermission

from features.authentication import CLIENT_KEY_REFUSAL, SdkClient


class IsSdkClient(BasePermission):
    """SDK endpoints: the caller authenticated with an environment's secret SDK key (not a user).

    A client key (publishable, read-only) is a valid credential refused here: 403 with the reason.
    """

    message = CLIENT_KEY_REFUSAL

    def has_permission(self, request, view) -> bool:
        user = request.user
        return isinstance(user, SdkClient) and not user.is_client_key
