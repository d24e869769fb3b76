from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords
from taggit.managers import TaggableManager


class MetricType(models.TextChoices):
    BINOMIAL = "binomial", "Conversion (did the unit do it at least once?)"
    COUNT = "count", "Count (how many times?)"
    SUM = "sum", "Sum of values (e.g. revenue)"
    RATIO = "ratio", "Ratio of two metrics (e.g. revenue per order)"
    QUANTILE = "quantile", "Quantile (e.g. p90 revenue per user, p99 page load time)"


class QuantileScope(models.TextChoices):
    UNIT = "unit", "Of units' totals (e.g. p90 of revenue per user)"
    EVENT = "event", "Of individual events (e.g. p99 of page load times)"


class Metric(models.Model):
    """What an experiment measures, computed per unit from raw events (docs/analysis.md)."""

    key = models.SlugField(
        max_length=100,
        unique=True,
        help_text="Short name used by the API and SDKs, e.g. purchase_rate. Letters, digits, - and _.",
    )
    name = models.CharField(max_length=200, help_text="What product managers call it, e.g. “Purchase rate”.")
    description = models.TextField(blank=True)
    type = models.CharField(max_length=16, choices=MetricType.choices, default=MetricType.BINOMIAL)
    event = models.CharField(
        max_length=200,
        help_text="The event name your product sends, e.g. purchase. For a ratio, the numerator's event.",
    )
    denominator = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ratio_metrics",
        help_text="Ratio metrics only: the metric divided by, e.g. “Orders” for revenue per order.",
    )
    window_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Count only events this many hours after a unit's first exposure. Empty: until the end.",
    )
    higher_is_better = models.BooleanField(
        default=True, help_text="Untick for metrics you want to go down, such as errors or latency."
    )
    cap_value = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Cap each unit's value at this number so a few outliers cannot swing the result.",
    )
    cap_percentile = models.FloatField(
        null=True,
        blank=True,
        help_text="Count and sum metrics: cap each unit's value at this percentile of all exposed units' "
        "values in the experiment (both arms together), e.g. 0.99. Use either this or a fixed cap.",
    )
    cap_ignore_zeros = models.BooleanField(
        default=False,
        help_text="With a percentile cap: leave out units whose value is 0 when computing the percentile.",
    )
    cuped = models.BooleanField(
        default=False,
        verbose_name="CUPED variance reduction",
        help_text="Use each unit's behaviour before the experiment to get significant results sooner.",
    )
    cuped_lookback_days = models.PositiveSmallIntegerField(
        default=14,
        validators=[MinValueValidator(1)],
        help_text="How many days before a unit's first exposure CUPED looks back.",
    )
    quantile = models.FloatField(
        null=True,
        blank=True,
        help_text="Quantile metrics only: which quantile, between 0 and 1 (0.9 for p90, 0.99 for p99).",
    )
    quantile_scope = models.CharField(
        max_length=8,
        choices=QuantileScope.choices,
        blank=True,
        help_text="Quantile metrics only: the quantile of each unit's total value in its window (unit), "
        "or of every single event's value (event).",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tags = TaggableManager(blank=True, help_text="Comma-separated labels to find things again.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.type == MetricType.RATIO:
            if self.denominator_id is None:
                errors["denominator"] = "A ratio metric needs a denominator metric."
            elif self.pk is not None and self.denominator_id == self.pk:
                errors["denominator"] = "A ratio metric cannot be its own denominator."
            elif self.denominator.type in (MetricType.RATIO, MetricType.QUANTILE):
                errors["denominator"] = (
                    "The denominator must be a conversion, count or sum metric, not a ratio or a quantile."
                )
        elif self.denominator_id is not None:
            errors["denominator"] = (
                "Only ratio metrics have a denominator; clear it or change the type to ratio."
            )
        if self.type == MetricType.BINOMIAL and self.cap_value is not None:
            # The roll-up never caps a conversion: a value that would be ignored is refused instead.
            errors["cap_value"] = (
                "A conversion (binomial) metric has no cap: each unit's value is already 0 or 1. "
                "Leave the cap empty, or choose the count or sum type."
            )
        errors.update(self._percentile_cap_errors())
        errors.update(self._quantile_errors())
        if errors:
            raise ValidationError(errors)

    def _percentile_cap_errors(self) -> dict[str, str]:
        """A percentile cap (0 < p < 1) is for count and sum metrics, instead of a fixed cap."""
        errors: dict[str, str] = {}
        if self.cap_percentile is None:
            if self.cap_ignore_zeros:
                errors["cap_ignore_zeros"] = (
                    "Ignoring zeros only applies to a percentile cap; set cap_percentile or untick it."
                )
            return errors
        if self.type not in (MetricType.COUNT, MetricType.SUM):
            errors["cap_percentile"] = (
                "Only count and sum metrics take a percentile cap; clear it or change the type."
            )
        elif not 0.0 < self.cap_percentile < 1.0:
            errors["cap_percentile"] = "The percentile must be strictly between 0 and 1, e.g. 0.99."
        elif self.cap_value is not None:
            errors["cap_percentile"] = (
                "A metric has either a fixed cap (cap_value) or a percentile cap (cap_percentile), "
                "not both; clear one of them."
            )
        return errors

    def _quantile_errors(self) -> dict[str, str]:
        """A quantile metric names its quantile (0 < q < 1) and scope; other metrics name neither."""
        errors: dict[str, str] = {}
        if self.type != MetricType.QUANTILE:
            if self.quantile is not None:
                errors["quantile"] = "Only quantile metrics have a quantile; clear it or change the type."
            if self.quantile_scope:
                errors["quantile_scope"] = (
                    "Only quantile metrics have a quantile scope; clear it or change the type."
                )
            return errors
        if self.quantile is None:
            errors["quantile"] = "A quantile metric needs its quantile, e.g. 0.9 for p90."
        elif not 0.0 < self.quantile < 1.0:
            errors["quantile"] = (
                "The quantile must be strictly between 0 and 1, e.g. 0.9 for p90 or 0.99 for p99."
            )
        if not self.quantile_scope:
            errors["quantile_scope"] = (
                "Say what the quantile is of: units' totals (unit) or individual events (event)."
            )
        if self.cuped:
            errors["cuped"] = (
                "CUPED does not apply to quantile metrics (GrowthBook's method has none); untick it."
            )
        return errors
