"""Serializers of the analytics API: the Results document (described for the schema), the power
calculator's input and answer."""

from typing import Any

from rest_framework import serializers


# --- results (documentation of the document the selector returns) --------------------------------------
class EstimateSerializer(serializers.Serializer):
    estimate = serializers.FloatField(allow_null=True)
    ci = serializers.ListField(
        child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True, help_text="[low, high]"
    )


class ComparisonSerializer(serializers.Serializer):
    variant = serializers.CharField()
    baseline = serializers.CharField(help_text="The control (the experiment's first variant).")
    relative = EstimateSerializer(help_text="Relative lift (variant / baseline − 1) and its interval.")
    absolute = EstimateSerializer(help_text="Difference of means and its interval.")
    p_value = serializers.FloatField(allow_null=True, help_text="Frequentist only: the relative lift's test.")
    p_value_adjusted = serializers.FloatField(
        allow_null=True,
        help_text="Holm or Benjamini–Hochberg across all primary and secondary comparisons, per the "
        "experiment's `correction`; equals `p_value` for guardrails and when `correction` is `none`.",
    )
    significant = serializers.BooleanField()
    direction = serializers.ChoiceField(choices=["improved", "regressed", "inconclusive"])
    chance_to_win = serializers.FloatField(allow_null=True, help_text="Bayesian only.")
    risk = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text="Bayesian only: [expected relative loss of keeping the baseline, of shipping the variant].",
    )
    guardrail_violated = serializers.BooleanField(
        allow_null=True, help_text="Guardrails only: it moved significantly in its bad direction."
    )
    error = serializers.CharField(
        allow_null=True,
        help_text="Why estimates are null: too_few_units, zero_variance, baseline_zero (relative only) "
        "or non_finite (sums too large to be finite numbers).",
    )


class VariantSummarySerializer(serializers.Serializer):
    variant = serializers.CharField()
    units = serializers.IntegerField()
    mean = serializers.FloatField(
        allow_null=True, help_text="Unadjusted mean (also under CUPED); Σm/Σd for ratios."
    )


class MetricResultSerializer(serializers.Serializer):
    metric = serializers.CharField()
    name = serializers.CharField()
    type = serializers.CharField()
    role = serializers.ChoiceField(choices=["primary", "secondary", "guardrail"])
    higher_is_better = serializers.BooleanField()
    cuped = serializers.BooleanField()
    variants = VariantSummarySerializer(many=True)
    comparisons = ComparisonSerializer(many=True)
    error = serializers.CharField(allow_null=True)


class SrmSerializer(serializers.Serializer):
    p_value = serializers.FloatField()
    units = serializers.DictField(child=serializers.IntegerField(), help_text="Units per variant.")
    ok = serializers.BooleanField(help_text="p_value >= the experiment's srm_threshold.")
    threshold = serializers.FloatField()
    weights = serializers.DictField(child=serializers.FloatField())


class TimeseriesPointSerializer(serializers.Serializer):
    date = serializers.DateField(help_text="Units exposed by the end of this day (UTC), events up to then.")
    variants = VariantSummarySerializer(many=True)
    comparisons = ComparisonSerializer(many=True)


class TimeseriesSerializer(serializers.Serializer):
    metric = serializers.CharField()
    role = serializers.CharField()
    points = TimeseriesPointSerializer(many=True)


class NoticeSerializer(serializers.Serializer):
    code = serializers.CharField(required=False)
    message = serializers.CharField(required=False)
    metric = serializers.CharField(required=False)
    variant = serializers.CharField(required=False)
    error = serializers.CharField(required=False)


class RefreshStateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "failed", "never_computed"])
    last_error = serializers.CharField(allow_null=True, help_text="Why the last refresh failed.")
    last_error_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    refreshed_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class ResultsSerializer(serializers.Serializer):
    """The Results document (the fields SDKs and dashboards rely on), with extras."""

    experiment = serializers.CharField()
    computed_at = serializers.DateTimeField(allow_null=True, help_text="Null until computed once.")
    srm = SrmSerializer(allow_null=True)
    metrics = MetricResultSerializer(many=True)
    timeseries = TimeseriesSerializer(many=True, help_text="Daily cumulative results of the primary metrics.")
    warnings = NoticeSerializer(
        many=True, help_text="Sample ratio mismatch, violated guardrails, exclusions."
    )
    errors = NoticeSerializer(many=True)
    multiple_exposures = serializers.IntegerField(
        required=False, help_text="Units seen in several variants (excluded)."
    )
    units = serializers.DictField(required=False)
    analysis = serializers.DictField(
        required=False,
        help_text="Analysis window and settings: from, until, correction, alpha, sequential, "
        "sequential_tuning, and environments (the environments whose exposures and events were counted).",
    )
    data = serializers.DictField(required=False, help_text="Data freshness: first/last exposure, last event.")
    engine = serializers.CharField(required=False)
    experiment_status = serializers.CharField(required=False)
    timings_ms = serializers.DictField(required=False)
    refresh = RefreshStateSerializer(
        help_text="How the last refresh went; a failed one keeps the last good numbers."
    )
    message = serializers.CharField(required=False)


class RefreshAcceptedSerializer(serializers.Serializer):
    experiment = serializers.CharField()
    status = serializers.CharField()
    detail = serializers.CharField()


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
