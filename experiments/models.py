import re
import unicodedata
from typing import Any

from django import forms
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords
from taggit.managers import TaggableManager

from metrics.models import Metric


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    STOPPED = "stopped", "Stopped"
    ARCHIVED = "archived", "Archived"


class Engine(models.TextChoices):
    FREQUENTIST = "frequentist", "Frequentist (p-values and confidence intervals)"
    BAYESIAN = "bayesian", "Bayesian (chance to win and risk)"


class Correction(models.TextChoices):
    NONE = "none", "None"
    HOLM = "holm", "Holm-Bonferroni (controls the chance of any false positive)"
    BH = "bh", "Benjamini-Hochberg (controls the share of false positives)"


class MetricRole(models.TextChoices):
    PRIMARY = "primary", "Primary (decides the experiment)"
    SECONDARY = "secondary", "Secondary (to learn from)"
    GUARDRAIL = "guardrail", "Guardrail (must not get worse)"


# Weights are relative, so no split needs more than this; the bound keeps their sum finite (two
# weights of 1e308 overflowed it and broke assignment of every experiment).
MAX_VARIANT_WEIGHT = 1_000_000


def validate_positive(value: float) -> None:
    if value is None or not value > 0:
        raise ValidationError("Must be greater than 0.")


# --- the environments whose traffic an experiment's results analyse ------------------------------------
DEFAULT_ANALYSIS_ENVIRONMENT = "production"


def default_analysis_environments() -> list[str]:
    """Results count production traffic unless told otherwise: tests from development and staging keys
    would otherwise mix with what real users did."""
    return [DEFAULT_ANALYSIS_ENVIRONMENT]


def environment_keys() -> list[str]:
    """Every environment's key, in the environments' order.

    Environments belong to ``features``, which depends on this app; they are read through the app
    registry so that ``experiments`` never imports ``features`` (dependencies point one way).
    """
    environment = apps.get_model("features", "Environment")
    return list(environment.objects.values_list("key", flat=True))


def validate_analysis_environments(value: Any) -> None:
    """One or more keys of existing environments, each once."""
    if not isinstance(value, list) or not value or not all(isinstance(key, str) for key in value):
        raise ValidationError('Give one or more environment keys, e.g. ["production"].')
    if len(set(value)) != len(value):
        raise ValidationError("Name each environment once.")
    known = environment_keys()
    unknown = [key for key in value if key not in known]
    if unknown:
        raise ValidationError(
            f"There is no environment {', '.join(f'“{key[:50]}”' for key in unknown)}; "
            f"choose from {', '.join(known)}."
        )


def _environment_choices() -> list[tuple[str, str]]:
    return [(key, key) for key in environment_keys()]


class EnvironmentKeysField(models.JSONField):
    """A list of environment keys, stored as JSON; in forms, one checkbox per existing environment."""

    def formfield(self, **kwargs: Any) -> forms.Field:
        # models.Field's, not JSONField's (which would make a JSON text box): a multiple choice.
        return models.Field.formfield(
            self,
            form_class=forms.TypedMultipleChoiceField,
            choices=_environment_choices,
            widget=forms.CheckboxSelectMultiple,
            **kwargs,
        )


# The lifecycle: action -> (statuses it may start from, status it leads to). Services consult this
# table; nothing else decides which transition is allowed.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({ExperimentStatus.DRAFT}), ExperimentStatus.RUNNING),
    "pause": (frozenset({ExperimentStatus.RUNNING}), ExperimentStatus.PAUSED),
    "resume": (frozenset({ExperimentStatus.PAUSED}), ExperimentStatus.RUNNING),
    "stop": (frozenset({ExperimentStatus.RUNNING, ExperimentStatus.PAUSED}), ExperimentStatus.STOPPED),
    "archive": (frozenset({ExperimentStatus.DRAFT, ExperimentStatus.STOPPED}), ExperimentStatus.ARCHIVED),
}

# Once an experiment has been started, these define who sees what; changing them would mix
# incomparable data, so they are locked for good (the contract requires it while running).
LOCKED_FIELDS = ("key", "variants", "targeting", "layer", "hash_seed", "hash_attribute", "fallback_attribute")
DELETABLE_STATUSES = frozenset({ExperimentStatus.DRAFT, ExperimentStatus.ARCHIVED})


def _hashed_text_problem(value: str) -> str | None:
    """Why a layer key or hash seed cannot be hashed safely, or None.

    Bucketing hashes ``seed + U+001F + unit_id`` as UTF-8: a U+001F in the seed could make two
    (seed, unit) pairs hash the same message, and a lone surrogate is encoded as U+FFFD, so two
    different texts could share buckets. Control characters are refused with them: nobody types them.
    """
    for char in value:
        category = unicodedata.category(char)
        if category == "Cc":
            return f"must not contain control characters such as tabs or line breaks ({char!r})"
        if category == "Cs":
            return "must not contain invalid Unicode (a lone surrogate)"
    return None


# --- the randomization unit -------------------------------------------------------------------------
UNIT_ID_ATTRIBUTE = "id"  # experiments.bucketing.UNIT_ID_ATTRIBUTE: the unit id itself
HASH_ATTRIBUTE_MAX_LENGTH = 64
# A top-level attribute name: GrowthBook's SDKs read the hash attribute as one key, while conditions
# read a dotted name as a path and a leading "$" as an operator; so neither is allowed here.
_HASH_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def validate_hash_attribute(value: str) -> None:
    """An attribute name the SDKs and our conditions read alike: letters, digits, ``_`` and ``-``."""
    if not isinstance(value, str) or not _HASH_ATTRIBUTE_NAME.fullmatch(value):
        raise ValidationError(
            f"“{str(value)[:70]}” is not an attribute name: use letters, digits, _ and - only, "
            "e.g. company_id (id is the unit id)."
        )
    if len(value) > HASH_ATTRIBUTE_MAX_LENGTH:
        raise ValidationError(f"An attribute name has at most {HASH_ATTRIBUTE_MAX_LENGTH} characters.")


def hash_attributes_problem(hash_attribute: str, fallback_attribute: str) -> str | None:
    """Why a (hash attribute, fallback attribute) pair cannot be used, or None."""
    if not fallback_attribute:
        return None
    if hash_attribute == UNIT_ID_ATTRIBUTE:
        return "A fallback is only used when the hash attribute is missing, and the unit id (id) never is."
    if fallback_attribute == hash_attribute:
        return "The fallback attribute must differ from the hash attribute."
    return None


class ManagedBy(models.TextChoices):
    """What owns an internal experiment: it changes only through its owner (``experiments.services``)."""

    HOLDOUT = "holdout", "holdout"
    SAFE_ROLLOUT = "safe_rollout", "safe rollout"


# What to do instead of changing an internal experiment directly, by owner.
MANAGED_INSTEAD = {
    ManagedBy.HOLDOUT: "stop the holdout instead",
    ManagedBy.SAFE_ROLLOUT: "change or remove the flag rule's safe rollout instead",
}


class Experiment(models.Model):
    key = models.SlugField(
        max_length=100, unique=True, help_text="Short name used by the API and SDKs, e.g. checkout_button."
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    hypothesis = models.TextField(
        blank=True, help_text="What you expect and why, e.g. “A green button raises purchases by 3%”."
    )
    status = models.CharField(
        max_length=16, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT, editable=False
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tags = TaggableManager(blank=True, help_text="Comma-separated labels to find things again.")

    traffic_allocation = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of eligible users in the experiment, from 0 to 1. You can raise it while "
        "running; users already in stay in their variant.",
    )
    targeting = models.JSONField(
        default=dict,
        blank=True,
        help_text='Who is eligible, e.g. {"country": {"$in": ["US", "CA"]}}. Empty: everyone.',
    )
    layer = models.CharField(
        max_length=100,
        blank=True,
        db_index=True,
        help_text="Experiments with the same layer never share a user, e.g. “home page/v2”. "
        "Any text; leave empty if unsure.",
    )
    layer_slice_start = models.FloatField(null=True, blank=True, editable=False)
    hash_seed = models.CharField(
        max_length=100,
        blank=True,
        help_text="Advanced: changes who gets which variant. Empty: the experiment's key. "
        "Avoid a feature's key: that feature's rollouts hash with it.",
    )
    hash_attribute = models.CharField(
        max_length=HASH_ATTRIBUTE_MAX_LENGTH,
        default=UNIT_ID_ATTRIBUTE,
        blank=True,
        validators=[validate_hash_attribute],
        help_text="Advanced: the attribute that decides the variant. id (the default, also when empty) is "
        "the unit id; "
        "company_id, for example, gives everyone in a company the same variant. Units without a value "
        "(and without the fallback) are not in the experiment.",
    )
    fallback_attribute = models.CharField(
        max_length=HASH_ATTRIBUTE_MAX_LENGTH,
        blank=True,
        validators=[validate_hash_attribute],
        help_text="Advanced, optional: decides for units that have no value for the hash attribute, "
        "e.g. id. Empty: those units are left out.",
    )

    engine = models.CharField(max_length=16, choices=Engine.choices, default=Engine.FREQUENTIST)
    alpha = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0001), MaxValueValidator(0.5)],
        help_text="Accepted false-positive rate; 0.05 means 95% confidence.",
    )
    sequential = models.BooleanField(
        default=False, help_text="Lets you look at results every day without inflating false positives."
    )
    sequential_tuning = models.PositiveIntegerField(
        default=5000,
        validators=[MinValueValidator(1)],
        help_text="Sequential testing: the sample size per variant where the intervals are tightest.",
    )
    correction = models.CharField(
        max_length=8,
        choices=Correction.choices,
        default=Correction.NONE,
        help_text="Adjusts p-values when you test several metrics or variants at once.",
    )
    srm_threshold = models.FloatField(
        default=0.001,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Warn about a sample ratio mismatch when the check's p-value falls below this.",
    )
    prior_mean = models.FloatField(
        null=True,
        blank=True,
        help_text="Bayesian only, optional: prior mean of the relative lift (0 = no lift).",
    )
    prior_stddev = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0)],
        help_text="Bayesian only, optional: prior standard deviation of the relative lift (e.g. 0.3).",
    )
    minimum_detectable_effect = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0001)],
        help_text="Smallest relative lift worth detecting (0.05 = 5%); used for the power estimate.",
    )
    analysis_environments = EnvironmentKeysField(
        "analysed environments",
        default=default_analysis_environments,
        validators=[validate_analysis_environments],
        help_text="Results count only the exposures and events sent with these environments' SDK keys. "
        "Default: production, so tests from development and staging stay out. You can change it at any "
        "time; the next refresh recomputes the results.",
    )

    scheduled_start_at = models.DateTimeField(null=True, blank=True, help_text="Start automatically then.")
    scheduled_stop_at = models.DateTimeField(null=True, blank=True, help_text="Stop automatically then.")
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    stopped_at = models.DateTimeField(null=True, blank=True, editable=False)
    decision_variant = models.CharField(
        max_length=100, blank=True, editable=False, help_text="The variant shipped when it was stopped."
    )
    decision_reason = models.TextField(blank=True, editable=False)

    # An internal experiment (a holdout's or a safe rollout's) names its owner here; the experiments'
    # services refuse to change it (409), so it changes only with its owner. Empty: an ordinary one.
    managed_by = models.CharField(max_length=16, choices=ManagedBy.choices, blank=True, editable=False)
    managed_by_name = models.CharField(
        max_length=200, blank=True, editable=False, help_text="Which holdout or safe rollout owns it."
    )

    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(traffic_allocation__gte=0) & models.Q(traffic_allocation__lte=1),
                name="experiment_traffic_allocation_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    @property
    def seed(self) -> str:
        return self.hash_seed or self.key

    @property
    def managed_problem(self) -> str | None:
        """Why this experiment may not be changed directly (it belongs to a holdout or a safe
        rollout), or None for an ordinary experiment."""
        if not self.managed_by:
            return None
        owner = ManagedBy(self.managed_by)
        return f"This experiment belongs to {owner.label} {self.managed_by_name}; {MANAGED_INSTEAD[owner]}."

    @property
    def is_locked(self) -> bool:
        return self.status != ExperimentStatus.DRAFT

    def clean(self) -> None:
        from experiments.conditions import ConditionError, validate_condition

        errors: dict[str, str] = {}
        # Free text, but surrounding spaces would make "home page" and "home page " two layers.
        self.layer = (self.layer or "").strip()
        if problem := _hashed_text_problem(self.layer):
            errors["layer"] = f"The layer {problem}."
        # Checked when the seed is set or changed only: a seed stored before these rules existed is
        # locked once the experiment runs, and refusing it would block every later save.
        seed_changed = (
            self.pk is None or not type(self).objects.filter(pk=self.pk, hash_seed=self.hash_seed).exists()
        )
        if seed_changed and (problem := _hashed_text_problem(self.hash_seed)):
            errors["hash_seed"] = f"The hash seed {problem}."
        try:
            validate_condition(self.targeting)
        except ConditionError as exc:
            errors["targeting"] = str(exc)
        self.hash_attribute = (self.hash_attribute or "").strip() or UNIT_ID_ATTRIBUTE
        self.fallback_attribute = (self.fallback_attribute or "").strip()
        if problem := hash_attributes_problem(self.hash_attribute, self.fallback_attribute):
            errors["fallback_attribute"] = problem
        if (
            self.scheduled_start_at
            and self.scheduled_stop_at
            and self.scheduled_stop_at <= self.scheduled_start_at
        ):
            errors["scheduled_stop_at"] = "The scheduled stop must come after the scheduled start."
        if (self.prior_mean is None) != (self.prior_stddev is None):
            errors["prior_stddev"] = "Give both a prior mean and a prior standard deviation, or neither."
        elif self.prior_stddev is not None and self.prior_stddev <= 0:
            errors["prior_stddev"] = "The prior standard deviation must be greater than 0."
        if errors:
            raise ValidationError(errors)


class Variant(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    key = models.SlugField(
        max_length=100, help_text="e.g. control, treatment. The first variant is the control."
    )
    name = models.CharField(max_length=200, blank=True)
    weight = models.FloatField(
        default=1.0,
        validators=[validate_positive],
        help_text="Relative share of traffic: 1 and 1 split evenly; 2 and 1 gives two thirds to the first.",
    )
    payload = models.JSONField(null=True, blank=True, help_text="Optional JSON returned with the assignment.")
    position = models.PositiveSmallIntegerField(default=0)

    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="variant_unique_key_per_experiment"),
        ]

    def __str__(self) -> str:
        return self.key


class ExperimentMetric(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="metric_links")
    metric = models.ForeignKey(Metric, on_delete=models.PROTECT, related_name="experiment_links")
    role = models.CharField(max_length=16, choices=MetricRole.choices, default=MetricRole.PRIMARY)

    history = HistoricalRecords()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "metric"], name="experiment_metric_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.metric.key} ({self.role})"
