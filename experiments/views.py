from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from experiments.approvals import experiment_write
from experiments.filters import ExperimentFilter
from experiments.models import Experiment
from experiments.serializers import ExperimentSerializer, LifecycleSerializer, StopSerializer
from experiments.services import (
    LIFECYCLE_SERVICES,
    experiment_create,
    experiment_delete,
    experiment_update,
)

EXPERIMENT_EXAMPLE = OpenApiExample(
    "Checkout button",
    value={
        "key": "checkout_button",
        "name": "Green checkout button",
        "hypothesis": "A green button raises purchases by 3%.",
        "tags": ["checkout"],
        "variants": [
            {"key": "control", "name": "Blue", "weight": 1, "payload": {"color": "blue"}},
            {"key": "treatment", "name": "Green", "weight": 1, "payload": {"color": "green"}},
        ],
        "traffic_allocation": 0.5,
        "targeting": {"country": {"$in": ["US", "CA"]}},
        "metrics": [
            {"metric": "purchase_rate", "role": "primary"},
            {"metric": "errors", "role": "guardrail"},
        ],
        "engine": "frequentist",
        "alpha": 0.05,
        "sequential": True,
        "correction": "holm",
    },
)
STOP_EXAMPLE = OpenApiExample(
    "Ship the treatment",
    value={
        "decision_variant": "treatment",
        "reason": "Purchase rate +4.1%, no guardrail moved.",
        "version": 3,
    },
    request_only=True,
)
VERSION_EXAMPLE = OpenApiExample("With a version check", value={"version": 2}, request_only=True)
# A start, stop, ramp-up or schedule change of an experiment serving an environment that requires
# approval is held as a change request (the features app's /api/v1/change-requests/).
HELD = OpenApiResponse(
    description="Held for approval: the experiment serves an environment that requires approval. The body is "
    "the change request (`/api/v1/change-requests/{id}/`, also in `Location`); it applies once someone "
    "else approves it."
)


def _lifecycle_schema(verb: str, description: str, *, held: bool = False) -> dict:
    return extend_schema(
        summary=f"{verb.capitalize()} the experiment",
        description=description + " Refused with 409 when the experiment's status does not allow it.",
        request=LifecycleSerializer,
        responses={200: ExperimentSerializer, 202: HELD} if held else {200: ExperimentSerializer},
        examples=[VERSION_EXAMPLE],
    )


@extend_schema_view(
    list=extend_schema(
        summary="List experiments",
        description="Paginated; filter by `status`, `tag`, `owner`, `engine`, `layer`; search by key, name, "
        "description and hypothesis.",
        examples=[EXPERIMENT_EXAMPLE],
    ),
    retrieve=extend_schema(summary="Get an experiment", examples=[EXPERIMENT_EXAMPLE]),
    create=extend_schema(
        summary="Create an experiment (as a draft)",
        description="At least two variants with unique keys and positive weights; the first is the control.",
        examples=[EXPERIMENT_EXAMPLE],
    ),
    partial_update=extend_schema(
        summary="Change an experiment",
        description="Variants, weights, targeting, layer and hash seed are locked once started (409). "
        "`traffic_allocation` may be raised to ramp up, not lowered while running or paused (409). "
        "A stale `version` answers 409. A ramp-up or schedule change of an experiment serving an environment "
        "that requires approval answers 202 with the change request.",
        responses={200: ExperimentSerializer, 202: HELD},
        examples=[OpenApiExample("Ramp up", value={"traffic_allocation": 0.8, "version": 4})],
    ),
    update=extend_schema(summary="Replace an experiment", examples=[EXPERIMENT_EXAMPLE]),
    destroy=extend_schema(
        summary="Delete an experiment", description="Only drafts and archived experiments; otherwise 409."
    ),
    start=_lifecycle_schema(
        "start",
        "Draft → running. Takes a slice of its layer, if it has one. Needs approval (202) when the "
        "experiment serves an environment that requires it.",
        held=True,
    ),
    pause=_lifecycle_schema("pause", "Running → paused: nobody new enters, assignments stop."),
    resume=_lifecycle_schema("resume", "Paused → running."),
    archive=_lifecycle_schema("archive", "Draft or stopped → archived."),
    stop=extend_schema(
        summary="Stop the experiment",
        description="Running or paused → stopped, recording the decision: the variant shipped (or none) and "
        "why. Refused with 409 from other statuses. Needs approval (202) when the experiment serves an "
        "environment that requires it.",
        request=StopSerializer,
        responses={200: ExperimentSerializer, 202: HELD},
        examples=[STOP_EXAMPLE],
    ),
)
class ExperimentViewSet(viewsets.ModelViewSet):
    queryset = Experiment.objects.select_related("owner").prefetch_related(
        "variants", "metric_links__metric", "tags"
    )
    serializer_class = ExperimentSerializer
    lookup_field = "key"
    filterset_class = ExperimentFilter
    search_fields = ["key", "name", "description", "hypothesis"]
    ordering_fields = ["key", "name", "created_at", "started_at", "status"]
    change_actions = frozenset(LIFECYCLE_SERVICES)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data.pop("version", None)
        experiment = experiment_create(user=request.user, metrics=data.pop("metric_links", []), **data)
        return Response(self.get_serializer(self._reload(experiment)).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        partial = kwargs.pop("partial", False)
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "metric_links" in data:
            data["metrics"] = data.pop("metric_links")
        # A ramp-up or a new schedule of an experiment serving an environment that requires approval
        # is held as a change request (202, experiments/approvals.py).
        experiment = experiment_write(
            experiment=serializer.instance,
            operation="update",
            user=request.user,
            run=lambda: experiment_update(experiment=serializer.instance, user=request.user, **data),
        )
        return Response(self.get_serializer(self._reload(experiment)).data)

    def destroy(self, request, *args, **kwargs):
        experiment_delete(experiment=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _reload(self, experiment: Experiment) -> Experiment:
        return self.get_queryset().get(pk=experiment.pk)

    def _lifecycle(self, request, action_name: str, serializer_class=LifecycleSerializer) -> Response:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        experiment, arguments = self.get_object(), serializer.validated_data
        # A start or a stop of an experiment serving an environment that requires approval is held as
        # a change request (202, experiments/approvals.py); the version is checked when it is proposed.
        experiment = experiment_write(
            experiment=experiment,
            operation=action_name,
            user=request.user,
            run=lambda: LIFECYCLE_SERVICES[action_name](
                experiment=experiment, user=request.user, **arguments
            ),
            params={name: value for name, value in arguments.items() if name != "version"},
        )
        return Response(self.get_serializer(self._reload(experiment)).data)

    @action(detail=True, methods=["post"])
    def start(self, request, key=None):
        return self._lifecycle(request, "start")

    @action(detail=True, methods=["post"])
    def pause(self, request, key=None):
        return self._lifecycle(request, "pause")

    @action(detail=True, methods=["post"])
    def resume(self, request, key=None):
        return self._lifecycle(request, "resume")

    @action(detail=True, methods=["post"])
    def stop(self, request, key=None):
        return self._lifecycle(request, "stop", StopSerializer)

    @action(detail=True, methods=["post"])
    def archive(self, request, key=None):
        return self._lifecycle(request, "archive")
