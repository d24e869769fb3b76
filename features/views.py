from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.response import Response

from features.filters import FeatureFilter
from features.governance.serializers import ChangeRequestSerializer
from features.governance.services import feature_delete, feature_write
from features.models import Environment, Feature
from features.serializers import EnvironmentSerializer, FeatureSerializer
from features.services import environment_delete, feature_create, feature_update

FEATURE_EXAMPLE = OpenApiExample(
    "New checkout",
    value={
        "key": "new_checkout",
        "name": "New checkout",
        "type": "boolean",
        "default_value": False,
        "environments": {
            "production": {
                "enabled": True,
                "rules": [
                    {"type": "force", "condition": {"plan": "internal"}, "value": True},
                    {
                        "type": "rollout",
                        "condition": {"country": {"$in": ["US"]}},
                        "value": True,
                        "coverage": 0.2,
                    },
                ],
            },
            "staging": {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": True}]},
        },
        "prerequisites": [],
        "tags": ["checkout"],
    },
)
ENVIRONMENT_EXAMPLE = OpenApiExample(
    "Production", value={"key": "production", "name": "Production", "description": "What customers see."}
)


HELD = (
    "A write that changes an environment requiring approval (its switch or rules; or the type, default "
    "value or prerequisites, served everywhere) is not applied: 202 with the change request "
    "(`/api/v1/change-requests/`), applied once someone else approves it."
)


def _service_fields(validated_data: dict) -> dict:
    data = dict(validated_data)
    if "prerequisites" in data:
        data["prerequisites"] = [
            {"feature": item["prerequisite"], "value": item["value"]} for item in data["prerequisites"]
        ]
    return data


@extend_schema_view(
    list=extend_schema(
        summary="List features",
        description="Paginated; filter by `type` and `tag`; search by key, name and description.",
        examples=[FEATURE_EXAMPLE],
    ),
    retrieve=extend_schema(summary="Get a feature", examples=[FEATURE_EXAMPLE]),
    create=extend_schema(
        summary="Create a feature flag",
        description="Values must match the feature's type; rules are tried in order, the first that applies wins. "
        + HELD,
        responses={201: FeatureSerializer, 202: ChangeRequestSerializer},
        examples=[FEATURE_EXAMPLE],
    ),
    partial_update=extend_schema(
        summary="Change a feature",
        description="Environments you send replace their rules; environments you leave out are kept. " + HELD,
        responses={200: FeatureSerializer, 202: ChangeRequestSerializer},
        examples=[
            OpenApiExample("Turn on in staging", value={"environments": {"staging": {"enabled": True}}})
        ],
    ),
    update=extend_schema(
        summary="Replace a feature",
        description=HELD,
        responses={200: FeatureSerializer, 202: ChangeRequestSerializer},
        examples=[FEATURE_EXAMPLE],
    ),
    destroy=extend_schema(
        summary="Delete a feature",
        description="A flag that is on, or has rules, in an environment requiring approval is not deleted: "
        "202 with the change request that deletes it once approved.",
        responses={204: None, 202: ChangeRequestSerializer},
    ),
)
class FeatureViewSet(viewsets.ModelViewSet):
    queryset = Feature.objects.select_related("owner").prefetch_related(
        "tags",
        "environment_settings__environment",
        "rules__environment",
        "rules__experiment",
        "prerequisites__prerequisite",
    )
    serializer_class = FeatureSerializer
    lookup_field = "key"
    filterset_class = FeatureFilter
    search_fields = ["key", "name", "description"]
    ordering_fields = ["key", "name", "created_at"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = _service_fields(serializer.validated_data)
        # A flag created on (or with rules) in an environment that requires approval is held: 202.
        feature = feature_write(
            feature=None, user=request.user, run=lambda: feature_create(user=request.user, **fields)
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=feature.pk)).data, status=201)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        fields = _service_fields(serializer.validated_data)
        # A change to an environment that requires approval is held as a change request: 202.
        feature = feature_write(
            feature=serializer.instance,
            user=request.user,
            run=lambda: feature_update(feature=serializer.instance, user=request.user, **fields),
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=feature.pk)).data)

    def destroy(self, request, *args, **kwargs):
        feature_delete(feature=self.get_object(), user=request.user)  # held for approval: 202
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="List environments", examples=[ENVIRONMENT_EXAMPLE]),
    retrieve=extend_schema(summary="Get an environment", examples=[ENVIRONMENT_EXAMPLE]),
    create=extend_schema(summary="Create an environment", examples=[ENVIRONMENT_EXAMPLE]),
    partial_update=extend_schema(
        summary="Change an environment", examples=[OpenApiExample("Rename", value={"name": "Prod"})]
    ),
    update=extend_schema(summary="Replace an environment", examples=[ENVIRONMENT_EXAMPLE]),
    destroy=extend_schema(
        summary="Delete an environment", description="Refused (409) while SDK keys of the environment exist."
    ),
)
class EnvironmentViewSet(viewsets.ModelViewSet):
    queryset = Environment.objects.all()
    serializer_class = EnvironmentSerializer
    lookup_field = "key"
    search_fields = ["key", "name", "description"]
    filterset_fields = ["key"]

    def destroy(self, request, *args, **kwargs):
        environment_delete(environment=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
