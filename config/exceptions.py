"""Domain errors and the one DRF exception handler that maps them to HTTP statuses.

Services raise Django's ``ValidationError`` (400, with the field and the reason) or one of the
``DomainError`` subclasses below; they never import DRF. The handler below is the only place that
knows about HTTP.
"""

import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """A request that is well-formed but not allowed in the current state."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class TransitionNotAllowed(Conflict):
    code = "transition_not_allowed"


class StaleVersion(Conflict):
    code = "stale_version"


class LockedWhileRunning(Conflict):
    code = "locked"


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        body: dict[str, Any] = {"detail": exc.message, "code": exc.code}
        if exc.field:
            body[exc.field] = [exc.message]
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=as_serializer_error(exc))
    elif isinstance(exc, ObjectDoesNotExist):
        exc = Http404(str(exc))
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    return exception_handler(exc, context)
