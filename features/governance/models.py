"""Change requests (a write held until someone else approves it) and scheduled flag changes.

Imported at the end of ``features.models``, so both belong to the features app (app label
``features``, migrations in ``features/migrations``).
"""

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from experiments.models import Experiment
from features.models import Environment, Feature


class ChangeRequestStatus(models.TextChoices):
    OPEN = "open", "Waiting for review"
    APPLIED = "applied", "Approved and applied"
    REJECTED = "rejected", "Rejected"


class ChangeOperation(models.TextChoices):
    """What applying the change request does (each is one service call)."""

    FEATURE_CREATE = "feature.create", "Create a flag"
    FEATURE_UPDATE = "feature.update", "Change a flag"
    FEATURE_DELETE = "feature.delete", "Delete a flag"
    EXPERIMENT_START = "experiment.start", "Start an experiment"
    EXPERIMENT_STOP = "experiment.stop", "Stop an experiment"
    EXPERIMENT_UPDATE = "experiment.update", "Change an experiment (ramp-up, schedule)"
    HOLDOUT_START = "holdout.start", "Start a holdout"
    HOLDOUT_STOP = "holdout.stop", "Stop a holdout"
    HOLDOUT_UPDATE = "holdout.update", "Change a running holdout"
    SCHEDULE_CREATE = "schedule.create", "Schedule a flag change"


class ChangeRequest(models.Model):
    """A change to a flag, an experiment or a holdout that serves an environment requiring approval.

    Proposed with the change (``params``: the arguments of the service that applies it) and its diff
    against the state at that time; approved by another user with the permission, which applies it
    through the same services and validation, or rejected. ``base_fingerprint`` is the hash of the
    state the diff was made against: applying refuses (409) when the object changed since.
    """

    status = models.CharField(
        max_length=16, choices=ChangeRequestStatus.choices, default=ChangeRequestStatus.OPEN, db_index=True
    )
    operation = models.CharField(max_length=32, choices=ChangeOperation.choices)
    title = models.CharField(max_length=300, help_text="The change in a sentence.")
    feature = models.ForeignKey(
        Feature, null=True, blank=True, on_delete=models.SET_NULL, related_name="change_requests"
    )
    experiment = models.ForeignKey(
        Experiment, null=True, blank=True, on_delete=models.SET_NULL, related_name="change_requests"
    )
    holdout = models.ForeignKey(
        "features.Holdout", null=True, blank=True, on_delete=models.SET_NULL, related_name="change_requests"
    )
    target_key = models.CharField(
        max_length=100, help_text="The flag's, experiment's or holdout's key (kept if it is deleted)."
    )
    environments = models.JSONField(
        default=list, blank=True, help_text="The approval-requiring environments the change affects."
    )
    params = models.JSONField(default=dict, blank=True, help_text="What applying it passes to the service.")
    diff = models.JSONField(
        default=list, blank=True, help_text='[{"path", "before", "after"}], against the state when proposed.'
    )
    base_fingerprint = models.CharField(
        max_length=64, help_text="Hash of the state the diff was made against."
    )
    comment = models.TextField(blank=True, help_text="Why, from the author.")
    review_comment = models.TextField(blank=True, help_text="From the reviewer.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("approve_changerequest", "Can approve or reject change requests")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"


class ScheduledAction(models.TextChoices):
    SWITCH_ON = "switch_on", "Switch the flag on"
    SWITCH_OFF = "switch_off", "Switch the flag off"
    SET_COVERAGE = "set_coverage", "Set a rollout rule's coverage"


class ScheduledChangeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class ScheduledChange(models.Model):
    """Switch a flag on or off in one environment, or set a rollout rule's coverage, at ``run_at``.

    Fired by the scheduled-changes runner (every minute, as experiments' scheduled starts) through
    ``feature_update``, so the same validation holds; a change that no longer fits (the rule is gone,
    or is not a rollout any more) fails with the reason in ``result``.
    """

    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="scheduled_changes")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="scheduled_changes")
    action = models.CharField(max_length=16, choices=ScheduledAction.choices)
    rule_position = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Set coverage: which rule of the environment, counting from 1."
    )
    coverage = models.FloatField(null=True, blank=True, help_text="Set coverage: the new share, 0 to 1.")
    run_at = models.DateTimeField(db_index=True, help_text="When it happens (to the minute).")
    status = models.CharField(
        max_length=16,
        choices=ScheduledChangeStatus.choices,
        default=ScheduledChangeStatus.PENDING,
        db_index=True,
    )
    result = models.TextField(blank=True, help_text="What happened when it ran, or why it failed.")
    comment = models.TextField(blank=True)
    change_request = models.ForeignKey(
        ChangeRequest,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scheduled_changes",
        help_text="The approval it was created by, in an environment that requires approval.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    fired_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["run_at", "id"]

    def __str__(self) -> str:
        return f"{self.describe()} at {self.run_at:%Y-%m-%d %H:%M} UTC"

    def describe(self) -> str:
        where = f"{self.feature.key} in {self.environment.key}"
        if self.action == ScheduledAction.SWITCH_ON:
            return f"Switch {where} on"
        if self.action == ScheduledAction.SWITCH_OFF:
            return f"Switch {where} off"
        coverage = f"{self.coverage:.0%}" if self.coverage is not None else "?"
        return f"Set rule {self.rule_position} of {where} to {coverage}"
