"""The analytics API's power calculator (the results API is ``analytics.results.views``).

Same credentials as the management API (session or ``Authorization: Token``): a logged-in user.
"""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.serializers import PowerRequestSerializer, PowerResponseSerializer
from analytics.services import power_plan


class PowerView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="power_calculate",
        summary="Plan an experiment: duration or detectable lift",
        description=(
            "Give the baseline (mean and per-unit variance, or a conversion rate as `baseline_mean` "
            "alone), the units entering per day, the variant weights (control first), alpha and the "
            "wanted power, and either `relative_lift` (answers the days needed to detect it) or `days` "
            "(answers the smallest relative lift detectable in that time, `detectable` false when none "
            "is). Two-sided tests; with several treatments, the weakest comparison decides. Sequential "
            "testing widens the intervals and so needs more days. Invalid input: 400 naming the field."
        ),
        request=PowerRequestSerializer,
        responses={200: PowerResponseSerializer},
        examples=[
            OpenApiExample(
                "Days to detect +5% on a 10% conversion rate",
                request_only=True,
                value={
                    "baseline_mean": 0.1,
                    "daily_units": 2000,
                    "weights": [1, 1],
                    "alpha": 0.05,
                    "power": 0.8,
                    "relative_lift": 0.05,
                },  # fmt: skip
            ),
            OpenApiExample(
                "Lift detectable in 14 days on revenue per user",
                request_only=True,
                value={
                    "baseline_mean": 12.5,
                    "baseline_variance": 900.0,
                    "daily_units": 5000,
                    "weights": [1, 1, 1],
                    "days": 14,
                },  # fmt: skip
            ),
            OpenApiExample(
                "Answer",
                response_only=True,
                value={
                    "days": 59.4,
                    "relative_lift": 0.05,
                    "detectable": True,
                    "units": 118_816.3,
                    "power": 0.8,
                    "inputs": {"baseline_mean": 0.1, "daily_units": 2000},
                },  # fmt: skip
            ),
        ],
        tags=["analysis"],
    )
    def post(self, request) -> Response:
        serializer = PowerRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        plan = power_plan(**serializer.validated_data)
        return Response(PowerResponseSerializer(plan).data)
