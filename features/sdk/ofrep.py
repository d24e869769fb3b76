"""OFREP (OpenFeature Remote Evaluation Protocol): ``POST /ofrep/v1/evaluate/flags[/{key}]``.

The hottest path of the platform, served by a lean ``dispatch`` on Django's own request and response
and by the edge middleware's lean lane (``features.sdk.middleware``, ``lean = True``). Secret SDK keys
only; 401 and 403 have no body, as OFREP specifies; evaluation errors are OFREP's ``errorCode``
objects.
"""

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.views import APIView

from features.config import config_get
from features.evaluation import (
    CompiledConfig,
    Evaluation,
    Reason,
    evaluate_all,
    evaluate_feature,
    ofrep_reason,
)
from features.sdk.auth import WWW_AUTHENTICATE, IsSdkClient, SdkKeyAuthentication
from features.sdk.exposures import evaluations_log
from features.sdk.keys import CLIENT_KEY_REFUSAL, SdkClient, request_client, sdk_key_from_request
from features.sdk.serializers import (
    UNIT_ID_MAX_LENGTH,
    OfrepBulkFailureSerializer,
    OfrepBulkSuccessSerializer,
    OfrepContextSerializer,
    OfrepEvaluationFailureSerializer,
    OfrepEvaluationSuccessSerializer,
    OfrepFlagNotFoundSerializer,
    non_finite_number_path,
)
from features.sdk.views import EDGE_RESPONSES, SDK_AUTH, SdkJSONParser

logger = logging.getLogger(__name__)


class OfrepError(Exception):
    """An OFREP evaluation error: 400 with ``{key, errorCode, errorDetails}``."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class _NonFiniteNumber(Exception):
    """A number literal too large for a double (``1e400``): the context is refused, with its path."""


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan; the literals NaN and Infinity never get here
        raise _NonFiniteNumber
    return value


# One decoder for every request (``json.loads`` with options builds a new one per call). A number too
# large for a double stops the parse at once, so the common body is never walked a second time; the
# rare one is parsed again as it is and walked for the path of the offending number.
_CONTEXT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _json_text(body: bytes) -> str:
    # What ``json.loads`` does with bytes: UTF-8, -16 or -32 by the first bytes (RFC 4627).
    return body.decode(json.detect_encoding(body), "surrogatepass")


def ofrep_context(body: bytes) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(unit id, attributes, context) from an OFREP request body, or ``OfrepError``.

    An empty body or one without ``context`` lacks the targeting key. A body that is not a JSON
    object is a PARSE_ERROR; a context that is not an object, a targeting key that is not a
    non-empty string of at most ``UNIT_ID_MAX_LENGTH`` characters, or a number that is not finite
    (``1e400``) is INVALID_CONTEXT.
    """
    non_finite = False
    if body.strip():
        try:
            text = _json_text(body)
            try:
                payload = _CONTEXT_DECODER.decode(text)
            except _NonFiniteNumber:
                non_finite = True
                payload = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise OfrepError("PARSE_ERROR", f"The body is not valid JSON: {exc}") from None
    else:
        payload = {}
    if type(payload) is not dict:
        raise OfrepError("PARSE_ERROR", 'The body must be a JSON object: {"context": {"targetingKey": ...}}.')
    context = payload.get("context")
    if context is None:
        context = {}
    elif type(context) is not dict:
        raise OfrepError("INVALID_CONTEXT", "context must be an object.")
    unit_id = context.get("targetingKey")
    if unit_id is None or unit_id == "":
        raise OfrepError("TARGETING_KEY_MISSING", "context.targetingKey (the unit id) is required.")
    if type(unit_id) is not str:
        raise OfrepError("INVALID_CONTEXT", "context.targetingKey must be a string.")
    if len(unit_id) > UNIT_ID_MAX_LENGTH:
        raise OfrepError(
            "INVALID_CONTEXT", f"context.targetingKey is longer than {UNIT_ID_MAX_LENGTH} characters."
        )
    where = non_finite_number_path(context, "context") if non_finite else None
    if where is not None:
        raise OfrepError("INVALID_CONTEXT", f"{where}: numbers must be finite (1e400 reads as infinity).")
    attributes = {name: value for name, value in context.items() if name != "targetingKey"}
    return unit_id, attributes, context


def ofrep_failed(evaluation: Evaluation) -> dict[str, Any]:
    """OFREP's failure for a flag that cannot be evaluated (reason ERROR): GENERAL, with the key."""
    return {
        "key": evaluation.key,
        "errorCode": "GENERAL",
        "errorDetails": f"The flag {evaluation.key} cannot be evaluated: its stored configuration is "
        "damaged (the server logged why). Use your default value.",
    }


def ofrep_success(evaluation: Evaluation, version: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"version": version}
    if evaluation.experiment is not None:
        metadata["experiment"] = evaluation.experiment
    return {
        "key": evaluation.key,
        "value": evaluation.value,
        "reason": ofrep_reason(evaluation.reason),
        "variant": evaluation.variant,
        "metadata": metadata,
    }


def bulk_etag(version: str, context: Mapping[str, Any]) -> str:
    """The bulk answer's entity tag: the configuration version and the context, which decide it."""
    text = json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f'"{version}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _json(payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> HttpResponse:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return HttpResponse(body, status=status, headers=headers, content_type="application/json")


def _is_user_token(request: HttpRequest) -> bool:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "token" or not token.strip():
        return False
    try:
        TokenAuthentication().authenticate_credentials(token.strip())
    except exceptions.AuthenticationFailed:
        return False
    return True


class OfrepRefused(Exception):
    """The request's credential is refused: ``response`` says so as OFREP specifies."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def ofrep_client(request: HttpRequest) -> SdkClient:
    """The SDK client of an OFREP request, or ``OfrepRefused``: 401 (no, unknown or revoked key) or
    403 (a valid user token, which is not an SDK key), both without a body as OFREP specifies; 403
    with ``errorDetails`` for a client key, which only reads the payload."""
    client = request_client(request)  # resolved by the SDK edge middleware, as a rule
    if client is not None:
        if client.is_client_key:  # publishable keys read the payload only; the reason, as JSON
            raise OfrepRefused(_json({"errorDetails": CLIENT_KEY_REFUSAL}, status=403))
        return client
    if sdk_key_from_request(request) is None and _is_user_token(request):
        raise OfrepRefused(HttpResponse(status=403))
    raise OfrepRefused(HttpResponse(status=401, headers={"WWW-Authenticate": WWW_AUTHENTICATE}))


class OfrepView(APIView):
    """OFREP is the hottest path of the platform and has one representation, so it is served by this
    lean ``dispatch`` on Django's own request and response: the same SDK-key lookup as every SDK
    endpoint (``sdk_client_for_key``), without DRF's request wrapper, content negotiation and
    renderers, which cost more than the evaluation itself (``python -m bench evaluate``). DRF is kept
    for what it does well here: the class and ``extend_schema`` below document it in the OpenAPI
    schema. 401 and 403 have no body; evaluation errors are OFREP's ``errorCode`` objects."""

    authentication_classes = [SdkKeyAuthentication]  # read by drf-spectacular for the security scheme
    permission_classes = [IsSdkClient]
    parser_classes = [SdkJSONParser]  # read by drf-spectacular: the body is JSON, not a form
    sdk_endpoint = True  # CORS, body limit and rate limit: features.sdk.middleware.SdkEdgeMiddleware
    ofrep = True  # the edge's 413 and 429 carry OFREP's ``errorDetails``
    lean = True  # served by the edge's lean lane: no session, user, messages or CSRF middleware

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        try:
            client = ofrep_client(request)
            config = config_get(client.environment.id, generation=client.generation)
        except OfrepRefused as refusal:
            return refusal.response
        except DatabaseError:
            logger.exception("OFREP: no flag configuration available.")
            return _json(
                {"errorDetails": "The flag configuration is unavailable; retry shortly."}, status=500
            )
        return self.post(request, config, **kwargs)


OFREP_REQUEST_EXAMPLE = OpenApiExample(
    "Context",
    request_only=True,
    value={"context": {"targetingKey": "user-42", "country": "US", "plan": "pro"}},
)
OFREP_AUTH_RESPONSES = {
    401: OpenApiResponse(description="No SDK key, or an unknown or revoked one (no body)."),
    403: OpenApiResponse(
        description="A user credential (Token) instead of an SDK key (no body), or a client key, which only "
        "reads GET /api/features/{client_key} (`errorDetails` says so)."
    ),
    **EDGE_RESPONSES,
}


class OfrepFlagView(OfrepView):
    @extend_schema(
        operation_id="ofrep_evaluate_flag",
        summary="OFREP: evaluate one flag",
        description="OpenFeature Remote Evaluation Protocol, single flag (for server-side providers). "
        "`context.targetingKey` is the unit id; the other context fields are attributes. Reasons: STATIC, "
        "TARGETING_MATCH, SPLIT, DEFAULT (also when a prerequisite is not met), DISABLED. Numbers keep "
        "their kind: a float flag answers `0.25` or `1.0`. A flag whose stored configuration cannot be "
        "evaluated answers 400 with `errorCode` GENERAL.",
        tags=["ofrep"],
        auth=SDK_AUTH,
        request=OfrepContextSerializer,
        responses={
            200: OfrepEvaluationSuccessSerializer,
            400: OfrepEvaluationFailureSerializer,
            404: OfrepFlagNotFoundSerializer,
            **OFREP_AUTH_RESPONSES,
        },
        examples=[
            OFREP_REQUEST_EXAMPLE,
            OpenApiExample(
                "Served by an experiment",
                response_only=True,
                status_codes=["200"],
                value={
                    "key": "button_color",
                    "value": "green",
                    "reason": "SPLIT",
                    "variant": "treatment",
                    "metadata": {"version": "3f1c0d6a9b2e4f5a7c8d", "experiment": "checkout_button"},
                },
            ),
            OpenApiExample(
                "No targeting key",
                response_only=True,
                status_codes=["400"],
                value={
                    "key": "button_color",
                    "errorCode": "TARGETING_KEY_MISSING",
                    "errorDetails": "context.targetingKey (the unit id) is required.",
                },
            ),
            OpenApiExample(
                "Unknown flag",
                response_only=True,
                status_codes=["404"],
                value={
                    "key": "no_such_flag",
                    "errorCode": "FLAG_NOT_FOUND",
                    "errorDetails": "There is no flag no_such_flag in production.",
                },
            ),
        ],
    )
    def post(self, request: HttpRequest, config: CompiledConfig, key: str) -> HttpResponse:
        try:
            unit_id, attributes, _ = ofrep_context(request.body)
        except OfrepError as error:
            return _json({"key": key, "errorCode": error.code, "errorDetails": error.details}, status=400)
        evaluation = evaluate_feature(config, key, unit_id, attributes)
        if evaluation is None:
            return _json(
                {
                    "key": key,
                    "errorCode": "FLAG_NOT_FOUND",
                    "errorDetails": f"There is no flag {key} in {config.environment}.",
                },
                status=404,
            )
        if evaluation.reason == Reason.ERROR:
            return _json(ofrep_failed(evaluation), status=400)
        if evaluation.exposures:
            evaluations_log(
                (evaluation,), unit_id=unit_id, environment=config.environment, attributes=attributes
            )
        return _json(ofrep_success(evaluation, config.version))


class OfrepBulkView(OfrepView):
    @extend_schema(
        operation_id="ofrep_evaluate_flags",
        summary="OFREP: evaluate every flag",
        description="OpenFeature Remote Evaluation Protocol, bulk (for client-side providers): every flag of "
        "the SDK key's environment for the context. The answer carries an `ETag` (the configuration "
        "version and the context); send it back as `If-None-Match` to get 304 while nothing changed. A "
        "flag whose stored configuration cannot be evaluated is listed as a failure (`errorCode` "
        "GENERAL); the others are answered as usual.",
        tags=["ofrep"],
        auth=SDK_AUTH,
        parameters=[
            OpenApiParameter(
                "If-None-Match",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="The ETag of the last answer: 304 Not Modified while it still holds.",
            ),
            OpenApiParameter(
                "ETag",
                str,
                OpenApiParameter.HEADER,
                response=[200, 304],
                description="The answer's entity tag: the configuration version and the context.",
            ),
        ],
        request=OfrepContextSerializer,
        responses={
            200: OpenApiResponse(
                response=OfrepBulkSuccessSerializer,
                description="Every flag. Header `ETag`: the answer's entity tag.",
            ),
            304: OpenApiResponse(description="Not modified: the `If-None-Match` ETag still holds (no body)."),
            400: OfrepBulkFailureSerializer,
            **OFREP_AUTH_RESPONSES,
        },
        examples=[
            OFREP_REQUEST_EXAMPLE,
            OpenApiExample(
                "Every flag",
                response_only=True,
                status_codes=["200"],
                value={
                    "flags": [
                        {
                            "key": "discount",
                            "value": 0.25,
                            "reason": "STATIC",
                            "variant": "default",
                            "metadata": {"version": "3f1c0d6a9b2e4f5a7c8d"},
                        },
                        {
                            "key": "new_checkout",
                            "value": True,
                            "reason": "TARGETING_MATCH",
                            "variant": "rule-1",
                            "metadata": {"version": "3f1c0d6a9b2e4f5a7c8d"},
                        },
                    ],
                    "metadata": {"version": "3f1c0d6a9b2e4f5a7c8d"},
                },
            ),
            OpenApiExample(
                "Bad context",
                response_only=True,
                status_codes=["400"],
                value={"errorCode": "INVALID_CONTEXT", "errorDetails": "context must be an object."},
            ),
        ],
    )
    def post(self, request: HttpRequest, config: CompiledConfig) -> HttpResponse:
        try:
            unit_id, attributes, context = ofrep_context(request.body)
        except OfrepError as error:
            return _json({"errorCode": error.code, "errorDetails": error.details}, status=400)
        etag = bulk_etag(config.version, context)
        if etag_matches(request.headers.get("If-None-Match", ""), etag):
            return HttpResponse(status=304, headers={"ETag": etag})
        evaluations = evaluate_all(config, unit_id, attributes)
        evaluations_log(evaluations, unit_id=unit_id, environment=config.environment, attributes=attributes)
        return _json(
            {
                "flags": [
                    ofrep_failed(e) if e.reason == Reason.ERROR else ofrep_success(e, config.version)
                    for e in evaluations
                ],
                "metadata": {"version": config.version},
            },
            headers={"ETag": etag},
        )
