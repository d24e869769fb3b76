"""Serializers of the power calculator's input and answer (the results API's: ``analytics.results.serializers``)."""

from typing import Any

from rest_framework import serializers

# --- power ------------------------------------------------------------------------------------------------
# Bounds of the planning inputs: far beyond any real experiment, and small enough that the formulas'
# squares and products stay finite (JSON numbers such as 1e308 are finite, and overflow once squared).
POWER_MAX_ABS_MEAN = 1e12
POWER_MAX_VARIANCE = 1e24
POWER_MAX_DAILY_UNITS = 1e10
POWER_MAX_WEIGHT = 1e6
POWER_MAX_VARIANTS = 100
POWER_MAX_LIFT = 1000.0
POWER_MAX_DAYS = 36_500.0  # a hundred years
POWER_MAX_SEQUENTIAL_TUNING = 1e10


class PowerRequestSerializer(serializers.Serializer):
    """A planned experiment: the baseline, the traffic, the test; and a lift or a duration."""

    baseline_mean = serializers.FloatField(
        min_value=-POWER_MAX_ABS_MEAN,
        max_value=POWER_MAX_ABS_MEAN,
        help_text="The metric's mean in the control, or its conversion rate (between 0 and 1) when "
        "`baseline_variance` is left out.",
    )
    baseline_variance = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        max_value=POWER_MAX_VARIANCE,
        help_text="Per-unit variance; leave out for a conversion rate.",
    )
    daily_units = serializers.FloatField(
        max_value=POWER_MAX_DAILY_UNITS,
        help_text="Units entering the experiment per day (after traffic allocation).",
    )
    weights = serializers.ListField(
        child=serializers.FloatField(),
        required=False,
        default=[1.0, 1.0],
        max_length=POWER_MAX_VARIANTS,
        help_text=f"Relative weights, control first; each greater than 0 and at most {POWER_MAX_WEIGHT:,.0f}.",
    )
    alpha = serializers.FloatField(required=False, default=0.05)
    power = serializers.FloatField(
        required=False, default=0.8, help_text="Wanted chance of detecting the lift."
    )
    sequential = serializers.BooleanField(required=False, default=False)
    sequential_tuning = serializers.FloatField(
        required=False, default=5000.0, max_value=POWER_MAX_SEQUENTIAL_TUNING
    )
    relative_lift = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        max_value=POWER_MAX_LIFT,
        help_text="Give this to get the days needed (0.05 = +5%). A lift too small to detect with any "
        "number of units is refused (400).",
    )
    days = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        max_value=POWER_MAX_DAYS,
        help_text="Or this, to get the smallest detectable lift.",
    )

    def validate_baseline_variance(self, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise serializers.ValidationError("The variance must be greater than 0.")
        return value

    def validate_daily_units(self, value: float) -> float:
        if not value > 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value

    def validate_weights(self, value: list[float]) -> list[float]:
        if len(value) < 2 or any(not 0 < w <= POWER_MAX_WEIGHT for w in value):
            raise serializers.ValidationError(
                f"At least two weights, each greater than 0 and at most {POWER_MAX_WEIGHT:,.0f} "
                "(relative shares, control first)."
            )
        return value

    def validate_alpha(self, value: float) -> float:
        if not 0 < value < 1:
            raise serializers.ValidationError("Must be between 0 and 1.")
        return value

    def validate_power(self, value: float) -> float:
        if not 0 < value < 1:
            raise serializers.ValidationError("Must be between 0 and 1.")
        return value

    def validate_sequential_tuning(self, value: float) -> float:
        if not value > 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value

    def validate_relative_lift(self, value: float | None) -> float | None:
        if value is not None and (value == 0 or value <= -1):
            raise serializers.ValidationError("Must be non-zero and greater than -1.")
        return value

    def validate_days(self, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (attrs.get("relative_lift") is None) == (attrs.get("days") is None):
            raise serializers.ValidationError(
                {
                    "relative_lift": "Give either relative_lift (to get the days needed) or days (to get the "
                    "detectable lift), not both."
                }  # fmt: skip
            )
        mean = attrs["baseline_mean"]
        if mean == 0:
            raise serializers.ValidationError({"baseline_mean": "Must be non-zero for a relative lift."})
        if attrs.get("baseline_variance") is None and not 0 < mean < 1:
            raise serializers.ValidationError(
                {"baseline_mean": "Without baseline_variance this is a conversion rate: between 0 and 1."}
            )
        return attrs


class PowerResponseSerializer(serializers.Serializer):
    days = serializers.FloatField(
        allow_null=True, help_text="Days needed (fractional; round up to schedule)."
    )
    relative_lift = serializers.FloatField(
        allow_null=True, help_text="The lift asked about, or the smallest lift detectable in `days`."
    )
    detectable = serializers.BooleanField(help_text="False when no lift is detectable with that many units.")
    units = serializers.FloatField(allow_null=True, help_text="Units in all variants over `days`.")
    power = serializers.FloatField(
        allow_null=True, help_text="Chance of detecting `relative_lift` in `days`."
    )
    inputs = serializers.DictField(help_text="The request with its defaults filled in.")
