"""``/api/v1/assign`` and ``/api/v1/evaluate``, and what every SDK view shares (its base class, its
JSON parser, the documented answers of the edge), for SDK keys only.

Every view reads the key's environment configuration from memory (``features.config``), evaluates
with pure functions (``features.evaluation``, ``experiments.assignment``) and buffers exposures
(``features.sdk.exposures``): a warm request reads no table and writes nothing synchronously.

``sdk_endpoint = True`` puts a view behind ``features.sdk.middleware.SdkEdgeMiddleware``: CORS, the
1 MiB body limit and the per-key rate limit (413 and 429 before the view runs).
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from features.config import config_get
from features.evaluation import CompiledConfig, assign_unit, evaluate_all
from features.sdk.auth import IsSdkClient, SdkKeyAuthentication
from features.sdk.exposures import evaluations_log, exposure_log
from features.sdk.keys import SdkClient
from features.sdk.serializers import (
    AssignRequestSerializer,
    AssignResponseSerializer,
    EvaluateRequestSerializer,
    EvaluateResponseSerializer,
)


def _config(request) -> CompiledConfig:
    client: SdkClient = request.user
    return config_get(client.environment.id, generation=client.generation)


class SdkJSONParser(JSONParser):
    """DRF's JSON parser, with absurdly deep nesting answered 400 like any other malformed JSON."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


class SdkView(APIView):
    """SDK key first (so a request without credentials gets 401 with `WWW-Authenticate: Bearer`),
    then Token only to tell a user token apart: it authenticates, and is refused with 403."""

    sdk_endpoint = True  # CORS, body limit and rate limit: features.sdk.middleware.SdkEdgeMiddleware
    authentication_classes = [SdkKeyAuthentication, TokenAuthentication]
    permission_classes = [IsSdkClient]
    parser_classes = [SdkJSONParser]
    renderer_classes = [JSONRenderer]
    throttle_classes: list = []


# --- /api/v1/assign and /api/v1/evaluate --------------------------------------------------------------

ASSIGN_EXAMPLE = OpenApiExample(
    "Assign one user",
    request_only=True,
    value={
        "unit_id": "user-42",
        "attributes": {"country": "US", "plan": "pro"},
        "experiments": ["checkout_button"],
    },
)
ASSIGN_RESPONSE_EXAMPLE = OpenApiExample(
    "Assignments",
    response_only=True,
    value={
        "assignments": [
            {
                "experiment": "checkout_button",
                "variant": "green",
                "in_experiment": True,
                "reason": "ASSIGNED",
                "payload": {"color": "#0a0"},
            },
            {
                "experiment": "pricing_page",
                "variant": None,
                "in_experiment": False,
                "reason": "TARGETING_MISS",
                "payload": None,
            },
        ]
    },
)
EVALUATE_EXAMPLE = OpenApiExample(
    "Evaluate for one user", request_only=True, value={"unit_id": "user-42", "attributes": {"country": "US"}}
)
EVALUATE_RESPONSE_EXAMPLE = OpenApiExample(
    "Flag values",
    response_only=True,
    value={
        "flags": {
            "new_checkout": {"value": True, "variant": "rule-1", "reason": "TARGETING_MATCH"},
            "button_color": {"value": "green", "variant": "treatment", "reason": "SPLIT"},
            "discount": {"value": 0.25, "variant": "default", "reason": "STATIC"},
        },
        "version": "3f1c0d6a9b2e4f5a7c8d",
    },
)
# Only the SDK key is accepted; a user Token is recognised only to be refused with 403.
SDK_AUTH = [{"SdkKey": []}]
AUTH_RESPONSES = {
    401: OpenApiResponse(description="No SDK key, or an unknown or revoked one."),
    403: OpenApiResponse(description="A user credential (Token) instead of an SDK key."),
}
# Answered by features.sdk.middleware.SdkEdgeMiddleware before the view runs.
EDGE_RESPONSES = {
    413: OpenApiResponse(description="The body is larger than 1 MiB (`SDK_MAX_BODY_BYTES`)."),
    429: OpenApiResponse(
        description="The SDK key sent more than `SDK_RATE_LIMIT_PER_MINUTE` requests this minute; "
        "header `Retry-After`: seconds to wait."
    ),
}


class AssignView(SdkView):
    @extend_schema(
        operation_id="sdk_assign",
        summary="Assign a unit to experiments",
        description="The unit's variant in each experiment asked for (default: every running experiment). "
        "Deterministic: the same unit id and attributes always get the same answer, on any server. An "
        "exposure is recorded for each experiment the unit is in unless `log_exposure` is false.",
        tags=["sdk"],
        auth=SDK_AUTH,
        request=AssignRequestSerializer,
        responses={
            200: AssignResponseSerializer,
            400: OpenApiResponse(description="A field and why."),
            **AUTH_RESPONSES,
            **EDGE_RESPONSES,
        },
        examples=[ASSIGN_EXAMPLE, ASSIGN_RESPONSE_EXAMPLE],
    )
    def post(self, request):
        serializer = AssignRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        config = _config(request)
        unit_id, attributes = data["unit_id"], data["attributes"]
        assignments = assign_unit(config, unit_id, attributes, data.get("experiments"))
        if data["log_exposure"]:
            # An experiment's holdout (``assignment.holdout``) was decided first: its exposure too.
            for exposed in (e for a in assignments for e in (a.holdout, a) if e is not None):
                if exposed.in_experiment:
                    exposure_log(
                        experiment=exposed.experiment,
                        variant=exposed.variant,
                        unit_id=unit_id,
                        environment=config.environment,
                        attributes=attributes,
                        hash_attribute=exposed.hash_attribute,
                        hash_value=exposed.hash_value,
                    )
        return Response(
            {
                "assignments": [
                    {
                        "experiment": a.experiment,
                        "variant": a.variant,
                        "in_experiment": a.in_experiment,
                        "reason": a.reason,
                        "payload": a.payload,
                        "hash_attribute": a.hash_attribute,
                        "hash_value": a.hash_value,
                    }
                    for a in assignments
                ]
            }
        )


class EvaluateView(SdkView):
    @extend_schema(
        operation_id="sdk_evaluate",
        summary="Evaluate every flag for a unit",
        description="Every feature of the SDK key's environment with its value, variant and reason "
        "(STATIC, TARGETING_MATCH, SPLIT, DEFAULT, DISABLED, PREREQUISITE_FAILED, or ERROR with the default "
        "value when that flag's stored configuration cannot be used). Flags served by an experiment "
        "record the unit's exposure.",
        tags=["sdk"],
        auth=SDK_AUTH,
        request=EvaluateRequestSerializer,
        responses={
            200: EvaluateResponseSerializer,
            400: OpenApiResponse(description="A field and why."),
            **AUTH_RESPONSES,
            **EDGE_RESPONSES,
        },
        examples=[EVALUATE_EXAMPLE, EVALUATE_RESPONSE_EXAMPLE],
    )
    def post(self, request):
        serializer = EvaluateRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        unit_id, attributes = serializer.validated_data["unit_id"], serializer.validated_data["attributes"]
        config = _config(request)
        evaluations = evaluate_all(config, unit_id, attributes)
        evaluations_log(evaluations, unit_id=unit_id, environment=config.environment, attributes=attributes)
        return Response(
            {
                "flags": {
                    e.key: {"value": e.value, "variant": e.variant, "reason": e.reason} for e in evaluations
                },
                "version": config.version,
            }
        )
