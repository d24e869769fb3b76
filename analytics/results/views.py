"""The results API: an experiment's latest results and their refresh.

Same credentials as the management API (session or ``Authorization: Token``): reading needs a
logged-in user, refreshing needs the ``experiments.change_experiment`` permission.
"""

import math
import time

from django.core.cache import cache
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.results.breakdown import experiment_dimensions, experiment_results_breakdown
from analytics.results.selectors import experiment_results_get
from analytics.results.serializers import (
    DimensionsSerializer,
    RefreshAcceptedSerializer,
    ResultsQuerySerializer,
    ResultsSerializer,
)
from analytics.results.services import experiment_results_request_refresh, refresh_interval_seconds
from experiments.models import Experiment

RESULTS_EXAMPLE = OpenApiExample(
    "A frequentist experiment",
    response_only=True,
    value={
        "experiment": "checkout_button",
        "computed_at": "2025-03-14T09:30:00+00:00",
        "srm": {
            "p_value": 0.62,
            "units": {"control": 10_112, "treatment": 10_045},
            "ok": True,
            "threshold": 0.001,
            "weights": {"control": 1.0, "treatment": 1.0},
        },  # fmt: skip
        "metrics": [
            {
                "metric": "purchase_rate",
                "name": "Purchase rate",
                "type": "binomial",
                "role": "primary",
                "higher_is_better": True,
                "cuped": False,
                "variants": [
                    {"variant": "control", "units": 10_112, "mean": 0.1012},
                    {"variant": "treatment", "units": 10_045, "mean": 0.1113},
                ],
                "comparisons": [
                    {
                        "variant": "treatment",
                        "baseline": "control",
                        "relative": {"estimate": 0.0998, "ci": [0.0183, 0.1813]},
                        "absolute": {"estimate": 0.0101, "ci": [0.0019, 0.0183]},
                        "p_value": 0.0163,
                        "p_value_adjusted": 0.0326,
                        "significant": True,
                        "direction": "improved",
                        "chance_to_win": None,
                        "risk": None,
                        "guardrail_violated": None,
                        "error": None,
                    }
                ],
                "error": None,
            }
        ],
        "timeseries": [
            {
                "metric": "purchase_rate",
                "role": "primary",
                "points": [
                    {
                        "date": "2025-03-13",
                        "variants": [
                            {"variant": "control", "units": 9_870, "mean": 0.0988},
                            {"variant": "treatment", "units": 9_802, "mean": 0.1090},
                        ],
                        "comparisons": [
                            {
                                "variant": "treatment",
                                "baseline": "control",
                                "relative": {"estimate": 0.103, "ci": [0.019, 0.187]},
                                "absolute": {"estimate": 0.0102, "ci": [0.0019, 0.0185]},
                                "p_value": 0.016,
                                "significant": True,
                                "direction": "improved",
                                "chance_to_win": None,
                                "risk": None,
                                "error": None,
                            }  # fmt: skip
                        ],
                    }
                ],
            }
        ],
        "warnings": [],
        "errors": [],
        "multiple_exposures": 12,
        "units": {
            "total": 20_157,
            "variants": {"control": 10_112, "treatment": 10_045},
            "multiple_exposures": 12,
            "unknown_variant": 0,
        },  # fmt: skip
        "analysis": {
            "from": "2025-03-01T08:00:00+00:00",
            "until": "2025-03-14T09:30:00+00:00",
            "correction": "holm",
            "alpha": 0.05,
            "sequential": False,
            "sequential_tuning": 5000,
        },  # fmt: skip
        "data": {
            "first_exposure_at": "2025-03-01T08:00:00+00:00",
            "last_exposure_at": "2025-03-14T09:29:58+00:00",
            "last_event_at": "2025-03-14T09:29:59+00:00",
        },  # fmt: skip
        "engine": "frequentist",
        "experiment_status": "running",
        "refresh": {
            "status": "ok",
            "last_error": None,
            "last_error_at": None,
            "duration_ms": 840,
            "refreshed_by": "schedule",
            "updated_at": "2025-03-14T09:30:01+00:00",
        },  # fmt: skip
    },
)


class CanChangeExperiment(BasePermission):
    """Refreshing results is an action on the experiment: it needs the experiment's change permission."""

    message = "You need the permission to change experiments to refresh their results."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.has_perm("experiments.change_experiment"))


def refresh_slot(key: str) -> int | None:
    """Claim the experiment's refresh slot: None if a refresh may run now, else the seconds to wait.

    One refresh per experiment per ``RESULTS_REFRESH_MIN_INTERVAL_SECONDS`` (default 30), whoever
    asks; shared by every web process through the cache.
    """
    interval = refresh_interval_seconds()
    cache_key = f"analytics:results-refresh:{key}"
    now = time.time()
    if cache.add(cache_key, now + interval, timeout=interval):
        return None
    allowed_at = cache.get(cache_key)
    return max(1, math.ceil(allowed_at - now)) if allowed_at else interval


class ExperimentResultsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="experiment_results_retrieve",
        summary="Get an experiment's latest results",
        description=(
            "The latest results document: per metric and variant the units and unadjusted mean, and "
            "per treatment the relative and absolute effect with intervals, p-values (raw and adjusted "
            "across primary and secondary metrics), chance to win and risk (Bayesian), the sample ratio "
            "check, violated guardrails, and a daily time series of the primary metrics. Computed every "
            "5 minutes while the experiment runs, or on `POST .../results/refresh/`. Before the first "
            "computation the answer has empty `metrics`, a null `computed_at` and "
            "`refresh.status` `never_computed`; when the last refresh failed, the last good numbers with "
            "`refresh.status` `failed` and the error. 404 when the experiment does not exist.\n\n"
            "With `?dimension=NAME` (`entry_day` or an attribute of the exposures) the same document "
            "also has `dimension`: per level (a unit's level is the attribute's value on its first "
            "exposure; the 20 largest levels and `__other__`) its units, SRM check and metrics, each "
            "level analysed as its units alone, computed on demand and cached until the next refresh. "
            "Per-level p-values are not corrected across levels (a warning says so): exploratory. "
            "400 naming `dimension` and the available dimensions when it is unknown. A breakdown is "
            "computed once, whoever asks: while another request computes it (or while "
            "`RESULTS_BREAKDOWN_MAX_CONCURRENT` breakdowns compute, 2 by default), a request waits a "
            "few seconds for it, then answers 503 `breakdown_busy` with `Retry-After`."
        ),
        parameters=[
            ResultsQuerySerializer,
            OpenApiParameter(
                "Retry-After",
                int,
                OpenApiParameter.HEADER,
                response=[503],
                description="With `code` `breakdown_busy`: seconds after which to ask again.",
            ),
        ],
        responses={
            200: ResultsSerializer,
            400: OpenApiResponse(description="Unknown `dimension` (the message lists the available ones)."),
            404: OpenApiResponse(description="No such experiment."),
            503: OpenApiResponse(
                description="`breakdown_unavailable`: ClickHouse could not compute the breakdown; "
                "`breakdown_busy` (with `Retry-After`): another request is computing it, or the most "
                "breakdowns that may compute at once are computing."
            ),
        },
        examples=[RESULTS_EXAMPLE],
        tags=["experiments"],
    )
    def get(self, request, key: str) -> Response:
        experiment = get_object_or_404(Experiment, key=key)
        query = ResultsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if "dimension" in query.validated_data:
            document = experiment_results_breakdown(
                experiment=experiment, dimension=query.validated_data["dimension"]
            )
        else:
            document = experiment_results_get(experiment=experiment)
        return Response(document.to_dict())


class ExperimentResultsDimensionsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="experiment_results_dimensions",
        summary="List the dimensions an experiment's results can be broken down by",
        description=(
            "`entry_day` (the UTC day of each unit's first exposure) and every attribute name seen on the "
            "experiment's analysed exposures: the values `GET .../results/?dimension=` accepts. 404 when "
            "the experiment does not exist."
        ),
        responses={
            200: DimensionsSerializer,
            404: OpenApiResponse(description="No such experiment."),
            503: OpenApiResponse(description="ClickHouse could not be read."),
        },
        examples=[
            OpenApiExample(
                "Exposures with country and browser",
                response_only=True,
                value={"experiment": "checkout_button", "dimensions": ["entry_day", "browser", "country"]},
            )
        ],
        tags=["experiments"],
    )
    def get(self, request, key: str) -> Response:
        experiment = get_object_or_404(Experiment, key=key)
        body = {"experiment": experiment.key, "dimensions": experiment_dimensions(experiment=experiment)}
        return Response(DimensionsSerializer(body).data)


class ExperimentResultsRefreshView(APIView):
    permission_classes = [IsAuthenticated, CanChangeExperiment]

    @extend_schema(
        operation_id="experiment_results_refresh",
        summary="Recompute an experiment's results now",
        description=(
            "Queues a roll-up of the experiment's events and exposures and a new analysis; answers 202 "
            "at once (where tasks run in the web process, as in the embedded default, after the work is "
            "done). Read the outcome with `GET .../results/`. At most one refresh per experiment every "
            "30 seconds: a request within that time is also answered 202, with `status` "
            "`recently_refreshed` and a `Retry-After` header (seconds), and queues nothing. Needs the "
            "permission to change experiments."
        ),
        request=None,
        parameters=[
            OpenApiParameter(
                "Retry-After",
                int,
                OpenApiParameter.HEADER,
                response=[202],
                description="With `status` `recently_refreshed`: seconds until a refresh can be asked again.",
            )
        ],
        responses={
            202: RefreshAcceptedSerializer,
            404: OpenApiResponse(description="No such experiment."),
        },
        examples=[
            OpenApiExample(
                "Queued",
                response_only=True,
                status_codes=["202"],
                value={
                    "experiment": "checkout_button",
                    "status": "queued",
                    "detail": "The results are being recomputed; GET .../results/ shows them when done.",
                },  # fmt: skip
            ),
            OpenApiExample(
                "Refreshed moments ago (nothing queued)",
                response_only=True,
                status_codes=["202"],
                value={
                    "experiment": "checkout_button",
                    "status": "recently_refreshed",
                    "detail": "Refreshed less than 30 seconds ago; ask again in 12 s. GET .../results/ shows the latest.",
                },  # fmt: skip
            ),
        ],
        tags=["experiments"],
    )
    def post(self, request, key: str) -> Response:
        experiment = get_object_or_404(Experiment, key=key)
        wait = refresh_slot(experiment.key)
        if wait is not None:
            body = {
                "experiment": experiment.key,
                "status": "recently_refreshed",
                "detail": (
                    f"Refreshed less than {refresh_interval_seconds()} seconds ago; ask again in {wait} s. "
                    "GET .../results/ shows the latest."
                ),
            }
            return Response(
                RefreshAcceptedSerializer(body).data,
                status=status.HTTP_202_ACCEPTED,
                headers={"Retry-After": str(wait)},
            )
        experiment_results_request_refresh(experiment=experiment, user=request.user)
        body = {
            "experiment": experiment.key,
            "status": "queued",
            "detail": "The results are being recomputed; GET .../results/ shows them when done.",
        }
        return Response(RefreshAcceptedSerializer(body).data, status=status.HTTP_202_ACCEPTED)
