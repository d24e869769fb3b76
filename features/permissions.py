from rest_framework.permissions import BasePermission

from features.authentication import SdkClient


class IsSdkClient(BasePermission):
    """SDK endpoints: the caller authenticated with an environment's SDK key (not a user)."""

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, SdkClient)
