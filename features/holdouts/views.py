from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from features.governance.services import holdout_write
from features.holdouts.models import Holdout
from features.holdouts.serializers import HoldoutSerializer
from features.holdouts.services import LIFECYCLE_SERVICES, holdout_create, holdout_delete, holdout_update

HOLDOUT_EXAMPLE = OpenApiExample(
    "Quarterly holdout",
    value={
        "key": "q1_2027",
        "name": "Q1 2027 holdout",
        "percentage": 5,
        "hash_seed": "q1-2027",
        "hash_attribute": "id",
        "environments": ["production"],
        "features": ["new_checkout", "search_v2"],
        "experiments": ["checkout_button"],
        "metrics": ["purchase_rate", "revenue"],
    },
)


RUNNING_EXAMPLE = OpenApiExample(
    "Started",
    value={**HOLDOUT_EXAMPLE.value, "status": "running", "coverage": 0.1, "experiment": "holdout-q1_2027"},
    response_only=True,
)


# Starting, stopping or changing a running holdout that covers an environment requiring approval is held
# as a change request (features.governance.services.holdouts).
HELD = OpenApiResponse(
    description="Held for approval: the holdout covers an environment that requires approval. The body is "
    "the change request (`/api/v1/change-requests/{id}/`, also in `Location`); it applies once someone "
    "else approves it."
)


def _lifecycle_schema(verb: str, description: str) -> dict:
    return extend_schema(
        summary=f"{verb.capitalize()} the holdout",
        description=description + " Refused with 409 when the holdout's status does not allow it. Needs "
        "approval (202) when the holdout covers an environment that requires approval.",
        request=None,
        responses={200: HoldoutSerializer, 202: HELD},
        examples=[RUNNING_EXAMPLE],
    )


@extend_schema_view(
    list=extend_schema(summary="List holdouts", examples=[HOLDOUT_EXAMPLE]),
    retrieve=extend_schema(summary="Get a holdout", examples=[HOLDOUT_EXAMPLE]),
    create=extend_schema(
        summary="Create a holdout (as a draft)",
        description="`percentage` % of units (at most 50) are held out of the listed flags (they get the "
        "default value) and experiments (they are not in them); as many again are measured as the "
        "general population. A flag or an experiment is in one holdout at most.",
        examples=[HOLDOUT_EXAMPLE],
    ),
    partial_update=extend_schema(
        summary="Change a holdout",
        description="Key, percentage, hash seed and hash attribute are locked once started (409). A "
        "change of what a running holdout serves (its flags, experiments, environments) in an environment "
        "that requires approval answers 202 with the change request.",
        responses={200: HoldoutSerializer, 202: HELD},
        examples=[
            OpenApiExample(
                "Hold out one more flag", value={"features": ["new_checkout", "search_v2", "dark_mode"]}
            )
        ],
    ),
    update=extend_schema(
        summary="Replace a holdout", examples=[HOLDOUT_EXAMPLE], responses={200: HoldoutSerializer, 202: HELD}
    ),
    destroy=extend_schema(summary="Delete a holdout", description="Only drafts; otherwise 409."),
    start=_lifecycle_schema(
        "start", "Draft → running: creates its internal experiment (`experiment`) and holds units out."
    ),
    stop=_lifecycle_schema("stop", "Running → stopped: nobody is held out any more; results stay."),
)
class HoldoutViewSet(viewsets.ModelViewSet):
    queryset = Holdout.objects.select_related("experiment").prefetch_related(
        "features", "experiments", "metrics"
    )
    serializer_class = HoldoutSerializer
    lookup_field = "key"
    search_fields = ["key", "name", "description"]
    ordering_fields = ["key", "name", "created_at", "started_at", "status"]

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        holdout = holdout_create(user=request.user, **serializer.validated_data)
        return Response(self.get_serializer(self._reload(holdout)).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args, **kwargs) -> Response:
        partial = kwargs.pop("partial", False)
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        current, data = serializer.instance, serializer.validated_data
        holdout = holdout_write(
            holdout=current,
            operation="update",
            user=request.user,
            run=lambda: holdout_update(holdout=current, user=request.user, **data),
        )
        return Response(self.get_serializer(self._reload(holdout)).data)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        holdout_delete(holdout=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _reload(self, holdout: Holdout) -> Holdout:
        return self.get_queryset().get(pk=holdout.pk)

    def _lifecycle(self, request: Request, action_name: str) -> Response:
        current = self.get_object()
        holdout = holdout_write(
            holdout=current,
            operation=action_name,
            user=request.user,
            run=lambda: LIFECYCLE_SERVICES[action_name](holdout=current, user=request.user),
        )
        return Response(self.get_serializer(self._reload(holdout)).data)

    @action(detail=True, methods=["post"])
    def start(self, request: Request, key: str | None = None) -> Response:
        return self._lifecycle(request, "start")

    @action(detail=True, methods=["post"])
    def stop(self, request: Request, key: str | None = None) -> Response:
        return self._lifecycle(request, "stop")
