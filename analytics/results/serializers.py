"""Serializers of the results API: the Results document described for the schema (the view answers
``ResultsDocument.to_dict()``), and the answer to a refresh."""

from rest_framework import serializers


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


class QuantileSummarySerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="Observations: units (unit quantile) or events (event quantile).")
    n_star = serializers.IntegerField(help_text="The grid size the bounds were taken at.")
    estimate = serializers.FloatField(allow_null=True, help_text="The variant's quantile.")
    lower = serializers.FloatField(allow_null=True, help_text="The order statistic at the lower bound.")
    upper = serializers.FloatField(allow_null=True, help_text="The order statistic at the upper bound.")


class VariantSummarySerializer(serializers.Serializer):
    variant = serializers.CharField()
    units = serializers.IntegerField()
    mean = serializers.FloatField(
        allow_null=True,
        help_text="Unadjusted mean (also under CUPED); Σm/Σd for ratios; the quantile for quantile metrics.",
    )
    quantile_stats = QuantileSummarySerializer(
        required=False, help_text="Quantile metrics only: the summary the comparison was computed from."
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
    cap_used = serializers.FloatField(
        allow_null=True,
        help_text="What each unit's value (a ratio's numerator) was capped at: the metric's cap_value, "
        "the percentile cap computed over every exposed unit of the experiment (cap_percentile), or null.",
    )


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
    kind = serializers.ChoiceField(
        choices=["full", "incremental"],
        allow_null=True,
        help_text="How the last good results were rolled up: every unit recomputed, or only the units "
        "that new data touched.",
    )
    watermark = serializers.DateTimeField(
        allow_null=True,
        help_text="Every exposure and event received (received_at) up to this time is in the results.",
    )
    recomputed_metrics = serializers.ListField(
        child=serializers.CharField(),
        help_text="Metrics an incremental refresh rebuilt from every event (new or changed definitions).",
    )


class DimensionLevelSerializer(serializers.Serializer):
    level = serializers.CharField(
        help_text="The attribute's value on the units' first exposure, the entry day (YYYY-MM-DD), "
        "`__missing__` (the first exposure lacked the attribute) or `__other__` (every level beyond the "
        "20 largest, pooled)."
    )
    units = serializers.IntegerField(help_text="Analysed units of this level, every variant.")
    srm = SrmSerializer(help_text="The sample ratio check of this level's units against the weights.")
    metrics = MetricResultSerializer(
        many=True,
        help_text="Each metric analysed over this level's units alone (winsorized metrics keep the "
        "experiment-wide cap). p_value_adjusted corrects across the level's metrics, not across levels.",
    )


class DimensionBreakdownSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The dimension asked for: `entry_day` or an attribute name.")
    levels = DimensionLevelSerializer(many=True, help_text="The 20 largest levels, then `__other__`.")
    available = serializers.ListField(
        child=serializers.CharField(),
        help_text="Every dimension this experiment can be broken down by: `entry_day` and the attribute "
        "names seen on its exposures.",
    )


class ResultsQuerySerializer(serializers.Serializer):
    dimension = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Break the results down by this dimension: `entry_day` or an attribute name seen on the "
        "experiment's exposures (`GET .../results/dimensions/` lists them). Exploratory: per-level "
        "p-values are not corrected for the number of levels.",
    )


class DimensionsSerializer(serializers.Serializer):
    experiment = serializers.CharField()
    dimensions = serializers.ListField(
        child=serializers.CharField(),
        help_text="`entry_day`, then the attribute names seen on the experiment's analysed exposures.",
    )


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
    dimension = DimensionBreakdownSerializer(
        required=False, help_text="Only with `?dimension=NAME`: the results per level of that dimension."
    )


class RefreshAcceptedSerializer(serializers.Serializer):
    experiment = serializers.CharField()
    status = serializers.CharField()
    detail = serializers.CharField()
