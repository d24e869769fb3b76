"""Cache invalidation of the flag configuration on every committed change to what it is built from.

This is the one use of model signals here, and it is deliberate: it is cache invalidation, not
business logic. The services, the admin (including its inlines) and the management API all write
through model ``save()``/``delete()``, so receivers see every write whichever path made it; putting
the invalidation in each service would miss the admin's inline formsets.

A write invalidates twice: at once, so this process (and a test running inside one transaction)
never serves a snapshot older than its own write, and again on commit, because another process may
have rebuilt the snapshot from the database between the two and cached the pre-commit state.
Invalidation is cheap (one cache write) and idempotent, so repeating it per row costs nothing.
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from experiments.models import Experiment, Variant
from features.models import (
    Environment,
    Feature,
    FeatureEnvironment,
    FeaturePrerequisite,
    FeatureRule,
    Holdout,
    HoldoutExperiment,
    HoldoutFeature,
    SafeRollout,
    SdkKey,
)
from features.sdk.cache import config_invalidate

# Tags and a holdout's metrics (the only implicit many-to-many relations here) do not affect
# evaluation, so m2m_changed is not needed; a holdout's flags and experiments are through rows.
WATCHED_MODELS = (
    Feature,
    FeatureEnvironment,
    FeatureRule,
    FeaturePrerequisite,
    SafeRollout,  # a monitored rollout rule logs exposures (the snapshot's "monitor")
    Holdout,  # held-out units get defaults (the snapshot's "holdouts"); links are explicit rows:
    HoldoutFeature,
    HoldoutExperiment,
    Experiment,
    Variant,
    Environment,
    SdkKey,
)


def invalidate_on_commit(**kwargs) -> None:
    config_invalidate()
    transaction.on_commit(config_invalidate, using=kwargs.get("using"))


def connect() -> None:
    for model in WATCHED_MODELS:
        uid = f"flags-config-{model._meta.label_lower}"
        post_save.connect(invalidate_on_commit, sender=model, dispatch_uid=f"{uid}-save", weak=False)
        post_delete.connect(invalidate_on_commit, sender=model, dispatch_uid=f"{uid}-delete", weak=False)
