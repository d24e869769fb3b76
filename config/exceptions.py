"""Domain errors and the one DRF exception handler that maps them to HTTP statuses.

Services raise Django's ``ValidationError`` (400, with the field and the reason) or one of the
``DomainError`` subclasses below; they never import DRF. The handler below is the only place that
knows about HTTP.
"""

import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """A request that is well-formed but not allowed in the current state."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"
    headers: dict[str, str] | None = None  # response headers, such as a 503's Retry-After

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


class ApprovalRequired(DomainError):
    """The write was not applied: it changes an environment that requires approval, so it is held as
    a change request (``features.governance``) until someone else approves it. Not an error: the API
    answers 202 with the change request (``payload``) and its address (``location``); the admin
    shows ``message`` with a link to ``admin_url``."""

    status_code = status.HTTP_202_ACCEPTED
    code = "approval_required"

    def __init__(
        self, message: str, *, payload: dict[str, Any], location: str = "", admin_url: str = ""
    ) -> None:
        super().__init__(message)
        self.payload = payload
        self.location = location
        self.admin_url = admin_url


DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly."
VALUE_NOT_STORABLE = (
    "A value cannot be stored: a text or JSON value holds a character the database refuses "
    "(such as NUL, \\u0000) or a number out of range."
)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, OperationalError | InterfaceError):
        # The database cannot be reached (down, restarting, out of connections): a clean 503 the
        # client may retry, never a traceback. Other database errors (an IntegrityError, a
        # ProgrammingError) are bugs or races, not outages: they stay 500s and are reported as such.
        logger.error("Database unavailable during %s: %s", _view_name(context), exc)
        return Response({"detail": DATABASE_UNAVAILABLE}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, DataError):
        # The input passed validation but the database refuses it (PostgreSQL's text and jsonb
        # cannot hold NUL): the client's data, so 400, without the database's message (it quotes SQL).
        logger.warning("The database refused a value during %s: %s", _view_name(context), exc)
        return Response({"detail": VALUE_NOT_STORABLE}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ApprovalRequired):
        headers = {"Location": exc.location} if exc.location else None
        return Response(
            {**exc.payload, "detail": exc.message, "code": exc.code}, status=exc.status_code, headers=headers
        )
    if isinstance(exc, DomainError):
        body: dict[str, Any] = {"detail": exc.message, "code": exc.code}
        if exc.field:
            body[exc.field] = [exc.message]
        return Response(body, status=exc.status_code, headers=exc.headers)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=as_serializer_error(exc))
    elif isinstance(exc, ObjectDoesNotExist):
        exc = Http404(str(exc))
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, exceptions.PermissionDenied):
        # An authenticator that recognises a credential only to refuse it says why (an SDK key on a
        # management endpoint: features.sdk.auth.SdkKeyRefusal).
        refusal = getattr(getattr(context.get("request"), "successful_authenticator", None), "refusal", None)
        if refusal:
            exc = exceptions.PermissionDenied(refusal)
    # Imported here: DRF's views module loads the authentication classes, whose services import
    # this module's domain errors, so a module-level import would be circular.
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, list):
        # A validation error without a field (DRF's search filter raises one for a NUL in ?search=):
        # still an object, like every other error body.
        response.data = {api_settings.NON_FIELD_ERRORS_KEY: response.data}
    return response


# --- Django's own error pages --------------------------------------------------------------------------------
# Set as handler404 / handler500 in config.urls. A URL that matches no route (a key with a slash or a
# dot in it) or a crash outside DRF still answers JSON under the API paths; pages elsewhere (the
# admin) keep Django's plain pages. Neither ever shows a traceback (that is DEBUG's page, off in production).
API_PATH_PREFIXES = ("/api/", "/ofrep/")


OFREP_FLAG_PREFIX = "/ofrep/v1/evaluate/flags/"


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(OFREP_FLAG_PREFIX):
        # A flag key no route takes (it has a slash): OFREP's answer for a flag that does not exist.
        key = request.path.removeprefix(OFREP_FLAG_PREFIX)
        return JsonResponse(
            {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": f"There is no flag {key}."},
            status=status.HTTP_404_NOT_FOUND,
        )
    if request.path.startswith(API_PATH_PREFIXES):
        return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PATH_PREFIXES):
        return JsonResponse(
            {"detail": "A server error occurred; it has been logged."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    return defaults.server_error(request)


def _view_name(context: dict[str, Any]) -> str:
    view = context.get("view")
    return type(view).__name__ if view is not None else "a request"


# --- the errors in the OpenAPI schema ------------------------------------------------------------------------
# The statuses the handler above gives every management operation, so that the schema documents what
# clients really get (drf-spectacular documents only the success). Registered as a drf-spectacular
# postprocessing hook in settings; an operation that documents a status itself keeps its own.
ERROR_SCHEMA = {
    "type": "object",
    "description": "`detail` says what is wrong; a refused write also has a `code`. Invalid input "
    "answers `{field: [reasons]}` instead, one entry per field.",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "additionalProperties": True,
}
ERROR_RESPONSES = {
    "400": "Invalid input: each field with its reasons, or `detail` for a body that is not JSON.",
    "401": "No credentials, or wrong ones (`WWW-Authenticate` says how to sign in).",
    "403": "Signed in, but without the permission this needs; or an SDK key, which only calls the SDK "
    "endpoints.",
    "404": "No such object, or no such page of a list.",
    "409": "Refused in the current state: a transition, a field locked while running, a stale `version`, "
    "or an object still in use.",
    "503": DATABASE_UNAVAILABLE,
}
WRITE_ONLY_ERRORS = {"409"}
MANAGEMENT_SECURITY = {"tokenAuth", "cookieAuth"}


def document_error_responses(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular postprocessing hook: the error responses of every management operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            security = {name for requirement in operation.get("security", []) for name in requirement}
            if not security & MANAGEMENT_SECURITY:
                continue
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_RESPONSES.items():
                if code in WRITE_ONLY_ERRORS and method == "get":
                    continue
                responses.setdefault(code, {"description": description, "content": content})
    return result
