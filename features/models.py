import hashlib
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords
from taggit.managers import TaggableManager

from experiments.models import (
    HASH_ATTRIBUTE_MAX_LENGTH,
    UNIT_ID_ATTRIBUTE,
    Experiment,
    validate_hash_attribute,
)


def cors_origins_parse(text: str) -> tuple[str, ...]:
    """The origins of a ``cors_allowed_origins`` text: one a line (commas and spaces also separate),
    lower-cased, without a trailing slash; ``*`` stays ``*``."""
    return tuple(
        dict.fromkeys(origin.strip().lower().rstrip("/") for origin in text.replace(",", " ").split())
    )


def cors_origin_error(origin: str) -> str | None:
    """Why ``origin`` (as parsed) is not a browser origin, or None. An origin is a scheme and a host
    with an optional port, nothing else: ``https://app.example.com``, ``http://localhost:3000``."""
    if origin == "*":
        return None
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return f"{origin}: not a valid origin."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{origin}: an origin starts with http:// or https:// and names a host."
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return f"{origin}: an origin is only a scheme, a host and a port, without a path."
    return None


def default_false() -> bool:
    return False


def default_true() -> bool:
    return True


class Environment(models.Model):
    """Where flags are served: development, staging and production exist from the start."""

    key = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    cors_allowed_origins = models.TextField(
        "allowed browser origins",
        blank=True,
        help_text="Web pages that may call the SDK endpoints of this environment from the browser, one a "
        "line, e.g. https://shop.example.com or http://localhost:3000. * allows every site. Empty: none "
        "(server-side SDKs are not affected).",
    )
    requires_approval = models.BooleanField(
        default=False,
        help_text="Changes to flags in this environment (switches, rules, values), and the start, stop and "
        "ramp-up of experiments analysed here, wait for someone else to approve them.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "key"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = [
            error for error in map(cors_origin_error, cors_origins_parse(self.cors_allowed_origins)) if error
        ]
        if errors:
            raise ValidationError({"cors_allowed_origins": errors})


class FeatureType(models.TextChoices):
    BOOLEAN = "boolean", "On/off (boolean)"
    STRING = "string", "Text (string)"
    NUMBER = "number", "Number"
    JSON = "json", "JSON object"


class RuleType(models.TextChoices):
    FORCE = "force", "Force a value for matching users"
    ROLLOUT = "rollout", "Roll out a value to a share of matching users"
    EXPERIMENT = "experiment", "Serve an experiment's variants"


class Feature(models.Model):
    key = models.SlugField(
        max_length=100, unique=True, help_text="The flag key your code asks for, e.g. new_checkout."
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    type = models.CharField(max_length=16, choices=FeatureType.choices, default=FeatureType.BOOLEAN)
    default_value = models.JSONField(
        default=default_false,
        blank=True,
        help_text='Served when no rule applies or the environment is off. JSON: false, 0.5, "blue".',
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


class FeatureEnvironment(models.Model):
    """Whether a feature is on in one environment. Its rules are FeatureRule rows."""

    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="environment_settings")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="feature_settings")
    enabled = models.BooleanField(default=False, help_text="Off: everyone gets the default value.")

    history = HistoricalRecords()

    class Meta:
        ordering = ["environment__position"]
        constraints = [
            models.UniqueConstraint(fields=["feature", "environment"], name="feature_environment_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.feature.key} in {self.environment.key}"


class FeatureRule(models.Model):
    """One rule of a feature in one environment; rules are tried in `position` order, first match wins."""

    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="rules")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="feature_rules")
    position = models.PositiveSmallIntegerField(default=0, help_text="Lower numbers are tried first.")
    type = models.CharField(max_length=16, choices=RuleType.choices, default=RuleType.FORCE)
    condition = models.JSONField(
        default=dict, blank=True, help_text='Who the rule applies to, e.g. {"plan": "pro"}. Empty: everyone.'
    )
    value = models.JSONField(null=True, blank=True, help_text="Force and rollout rules: the value served.")
    coverage = models.FloatField(
        null=True, blank=True, help_text="Rollout rules: share of matching users who get the value, 0 to 1."
    )
    hash_attribute = models.CharField(
        max_length=HASH_ATTRIBUTE_MAX_LENGTH,
        default=UNIT_ID_ATTRIBUTE,
        blank=True,
        validators=[validate_hash_attribute],
        help_text="Rollout rules: the attribute that decides who is in the share; id (the default, also "
        "when empty) is the unit id, company_id rolls out to whole companies.",
    )
    fallback_attribute = models.CharField(
        max_length=HASH_ATTRIBUTE_MAX_LENGTH,
        blank=True,
        validators=[validate_hash_attribute],
        help_text="Rollout rules, optional: decides for units without a value for the hash attribute, "
        "e.g. id. Empty: those units are left out.",
    )
    experiment = models.ForeignKey(
        Experiment, null=True, blank=True, on_delete=models.PROTECT, related_name="feature_rules"
    )
    variant_values = models.JSONField(
        null=True,
        blank=True,
        help_text='Experiment rules: the value for each variant, e.g. {"control": false, "treatment": true}.',
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ["environment__position", "position", "id"]

    def __str__(self) -> str:
        return f"{self.feature.key}/{self.environment.key} #{self.position} {self.type}"


class FeaturePrerequisite(models.Model):
    """The feature is served only when `prerequisite` evaluates to `value` for the same unit."""

    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="prerequisites")
    prerequisite = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="dependents")
    value = models.JSONField(
        default=default_true, help_text="The value the prerequisite flag must have, e.g. true."
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["feature", "prerequisite"], name="feature_prerequisite_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.feature.key} requires {self.prerequisite.key}"


SDK_KEY_PREFIX_LENGTH = 12


def hash_sdk_key(raw_key: str) -> str:
    # SDK keys are 192-bit random tokens, so a fast unsalted hash is enough to make a stolen table
    # useless while keeping the lookup on the request path a single indexed equality.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class SdkKeyKind(models.TextChoices):
    """What a key may do. A secret key calls every SDK endpoint and reads the payload; a client key is
    publishable (browsers, mobile apps): it only reads the environment's GrowthBook payload."""

    SECRET = "secret", "Secret (server SDKs)"
    CLIENT = "client", "Client (publishable, read-only)"


SDK_KEY_PREFIXES = {SdkKeyKind.SECRET: "sdk_", SdkKeyKind.CLIENT: "pk_"}


def generate_sdk_key(kind: str = SdkKeyKind.SECRET) -> str:
    return SDK_KEY_PREFIXES[SdkKeyKind(kind)] + secrets.token_urlsafe(24)


class SdkKey(models.Model):
    """A credential for SDK endpoints, bound to one environment. Only its hash is stored."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="sdk_keys")
    name = models.CharField(max_length=100, blank=True, help_text="Who uses it, e.g. “web app”.")
    kind = models.CharField(
        max_length=10,
        choices=SdkKeyKind.choices,
        default=SdkKeyKind.SECRET,
        help_text="Secret: server SDKs, every SDK endpoint. Client: publishable in browsers and apps, "
        "it only reads the flags payload (/api/features/<key>).",
    )
    prefix = models.CharField(max_length=SDK_KEY_PREFIX_LENGTH, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    revoked = models.BooleanField(default=False, help_text="A revoked key is refused at once.")
    # GrowthBook's payload encryption (``features.encryption``): the server encrypts with it, so it is
    # stored as is; it is as public as the client key it goes with (both ship in the app).
    encryption_key = models.CharField(
        max_length=44,
        blank=True,
        editable=False,
        help_text="When set, /api/features/<key> answers the flags encrypted (GrowthBook's "
        "encryptedFeatures); give this to the SDK as its decryption key.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Written at most once a minute per key, never per request (``features.services.sdk_key_mark_used``).
    last_used_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When an SDK request last used it (to the minute)."
    )

    # Usage is not a change anyone made: it stays out of the history.
    history = HistoricalRecords(excluded_fields=["last_used_at"])

    class Meta:
        ordering = ["environment__position", "-created_at"]
        verbose_name = "SDK key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.environment.key})"


# Change requests and scheduled changes (features/governance/models.py) belong to this app.
from features.governance.models import ChangeRequest, ScheduledChange  # noqa: E402, F401


class SafeRolloutStatus(models.TextChoices):
    MONITORING = "monitoring", "Monitoring"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FINISHED = "finished", "Finished"


class SafeRollout(models.Model):
    """A rollout rule watched by guardrail metrics (docs/analysis.md, "Safe rollouts").

    Backed by an internal experiment (``experiment``, key ``safe-rollout-<rule id>``, variants
    ``control`` = matching units outside the rollout and ``treatment`` = inside it, guardrail metrics,
    sequential frequentist engine): while monitoring, evaluating the rule logs each matching unit's
    exposure to it, and every results refresh of that experiment decides (``analytics.safe_rollouts``):
    a guardrail significantly worse in the rollout rolls the rule back (coverage 0), and
    ``finish_after_hours`` without one finishes it (coverage 1).
    """

    rule = models.OneToOneField(FeatureRule, on_delete=models.CASCADE, related_name="safe_rollout")
    experiment = models.OneToOneField(Experiment, on_delete=models.PROTECT, related_name="safe_rollout")
    status = models.CharField(
        max_length=16, choices=SafeRolloutStatus.choices, default=SafeRolloutStatus.MONITORING
    )
    finish_after_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Finish the rollout (coverage 100%) after this many hours without a regression; empty: never.",
    )
    started_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    evidence = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the decision was made on: the guardrails' deltas and p-values.",
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"safe rollout of {self.rule} ({self.status})"


# Holdouts and webhooks live in their own packages (features/holdouts/, features/webhooks/); their
# models belong to this app.
from features.holdouts.models import (  # noqa: E402, F401
    Holdout,
    HoldoutExperiment,
    HoldoutFeature,
    HoldoutStatus,
)
from features.webhooks.models import Webhook, WebhookDelivery  # noqa: E402, F401
