"""Holdouts: a share of units kept out of chosen flags and experiments, analysed against everyone else.

A holdout (GrowthBook's "holdout experiment", docs/analysis.md "Holdouts") hashes each unit with its
own seed (GrowthBook's hash, version 2) into three groups: ``percentage`` % are *held out* (the
chosen flags answer their default value, the chosen experiments do not take them in), another
``percentage`` % are its *measurement sample* of the general population (served as usual), and the
rest are served as usual and not measured. Its results compare the held-out units with the
measurement sample, an equal-size sample of everyone else, as GrowthBook does.

The analysis runs on an internal experiment (``experiment``, key ``holdout-<key>``), created when the
holdout starts: variants ``holdout`` (the control, weight 1) and ``general`` (weight 1), traffic
allocation 2 × percentage / 100, the holdout's seed and hash attribute, and the holdout's metrics. Its
exposures are logged when a unit is evaluated for a held-out flag or experiment, so the existing
roll-up and engines give the holdout's results like any experiment's.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords

from experiments.models import (
    HASH_ATTRIBUTE_MAX_LENGTH,
    UNIT_ID_ATTRIBUTE,
    EnvironmentKeysField,
    Experiment,
    default_analysis_environments,
    validate_analysis_environments,
    validate_hash_attribute,
)
from features.evaluation import GENERAL, HELD_OUT  # the internal experiment's variants, in order
from metrics.models import Metric

__all__ = ["GENERAL", "HELD_OUT", "Holdout", "HoldoutExperiment", "HoldoutFeature", "HoldoutStatus"]

# At most half of the units held out: the measurement sample takes as many again.
MAX_PERCENTAGE = 50.0


class HoldoutStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


# The lifecycle: action -> (statuses it may start from, status it leads to). The services consult it.
HOLDOUT_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({HoldoutStatus.DRAFT}), HoldoutStatus.RUNNING),
    "stop": (frozenset({HoldoutStatus.RUNNING}), HoldoutStatus.STOPPED),
}
# Who is held out depends on these: locked once started, so units never change group.
HOLDOUT_LOCKED_FIELDS = ("key", "percentage", "hash_seed", "hash_attribute")


def holdout_experiment_key(holdout_key: str) -> str:
    """The key of a holdout's internal experiment: its exposures' and results' experiment."""
    return f"holdout-{holdout_key}"


class Holdout(models.Model):
    key = models.SlugField(
        max_length=90, unique=True, help_text="Short name used by the API and SDKs, e.g. q1_2027."
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=HoldoutStatus.choices, default=HoldoutStatus.DRAFT, editable=False
    )
    percentage = models.FloatField(
        default=5.0,
        validators=[MinValueValidator(0.01), MaxValueValidator(MAX_PERCENTAGE)],
        help_text="Percent of units held out, e.g. 5. As many again are measured as the comparison "
        "group, so at most 50.",
    )
    hash_seed = models.CharField(
        max_length=100,
        blank=True,
        help_text="Advanced: changes who is held out. Empty: the holdout's key.",
    )
    hash_attribute = models.CharField(
        max_length=HASH_ATTRIBUTE_MAX_LENGTH,
        default=UNIT_ID_ATTRIBUTE,
        blank=True,
        validators=[validate_hash_attribute],
        help_text="The attribute that decides who is held out: id (the default) is the unit id; "
        "company_id holds out whole companies. Units without a value are never held out.",
    )
    environments = EnvironmentKeysField(
        default=default_analysis_environments,
        validators=[validate_analysis_environments],
        help_text="Where units are held out, and whose traffic its results count. Default: production.",
    )
    features = models.ManyToManyField(
        "features.Feature",
        through="HoldoutFeature",
        related_name="holdouts",
        blank=True,
        help_text="Held-out units get these flags' default values.",
    )
    experiments = models.ManyToManyField(
        Experiment,
        through="HoldoutExperiment",
        related_name="holdouts",
        blank=True,
        help_text="Held-out units are never in these experiments.",
    )
    metrics = models.ManyToManyField(
        Metric, related_name="holdouts", blank=True, help_text="What the results compare."
    )
    experiment = models.OneToOneField(
        Experiment,
        null=True,
        blank=True,
        editable=False,
        on_delete=models.PROTECT,
        related_name="holdout",
        help_text="The internal experiment its results are computed on (created when it starts).",
    )
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    stopped_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(percentage__gt=0) & models.Q(percentage__lte=MAX_PERCENTAGE),
                name="holdout_percentage_0_50",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    @property
    def seed(self) -> str:
        return self.hash_seed or self.key

    @property
    def coverage(self) -> float:
        """The share of units hashed into the holdout or its measurement sample (GrowthBook's coverage)."""
        return 2.0 * self.percentage / 100.0

    def clean(self) -> None:
        self.hash_attribute = (self.hash_attribute or "").strip() or UNIT_ID_ATTRIBUTE
        if any(ord(char) < 32 or ord(char) == 127 for char in self.hash_seed or ""):
            raise ValidationError({"hash_seed": "The hash seed must not contain control characters."})


class HoldoutFeature(models.Model):
    """A flag held out by a holdout; a flag is in one holdout at most (GrowthBook's ``feature.holdout``)."""

    holdout = models.ForeignKey(Holdout, on_delete=models.CASCADE, related_name="feature_links")
    feature = models.ForeignKey("features.Feature", on_delete=models.CASCADE, related_name="holdout_links")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["feature"], name="holdout_feature_once")]

    def __str__(self) -> str:
        return f"{self.feature.key} held out by {self.holdout.key}"


class HoldoutExperiment(models.Model):
    """An experiment held out by a holdout; an experiment is in one holdout at most."""

    holdout = models.ForeignKey(Holdout, on_delete=models.CASCADE, related_name="experiment_links")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="holdout_links")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["experiment"], name="holdout_experiment_once")]

    def __str__(self) -> str:
        return f"{self.experiment.key} held out by {self.holdout.key}"
