"""The ingestion spool: accepted rows waiting for ClickHouse.

The API acknowledges a batch of events or exposures only once its rows are in ClickHouse or here. When
ClickHouse cannot be reached, the rows are written to this table (PostgreSQL in production) in the same
call, and ``analytics.tasks.spool_drain`` inserts them later, deleting a batch only after its insert
succeeded.
"""

import json
from typing import Any

from django.db import models
from django.utils import timezone

from analytics.results.document import ResultsDocument


class JSONTextField(models.TextField):
    """JSON kept as text. PostgreSQL's jsonb refuses the NUL character, which ClickHouse strings may
    hold (`"\u0000"`); the spool must keep every row it acknowledges, so it stores the JSON text."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        return None if value is None else json.loads(value)

    def to_python(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def get_prep_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))


class SpoolKind(models.TextChoices):
    EVENTS = "events", "Events"
    EXPOSURES = "exposures", "Exposures"


class SpoolBatch(models.Model):
    """One batch of rows that could not be inserted into ClickHouse yet."""

    kind = models.CharField(max_length=16, choices=SpoolKind.choices, help_text="Which table the rows go to.")
    payload = JSONTextField(help_text="The rows, in the table's column order (JSON values).")
    row_count = models.PositiveIntegerField(help_text="Number of rows in the batch.")
    created_at = models.DateTimeField(default=timezone.now, help_text="When the rows were accepted.")
    attempts = models.PositiveIntegerField(default=0, help_text="Failed attempts to insert the batch.")
    last_error = models.TextField(blank=True, default="", help_text="Why the last attempt failed.")
    next_attempt_at = models.DateTimeField(
        default=timezone.now, help_text="The drain does not try the batch again before this time."
    )

    class Meta:
        verbose_name = "spooled batch"
        verbose_name_plural = "spooled batches"
        ordering = ["next_attempt_at", "id"]
        indexes = [models.Index(fields=["next_attempt_at", "id"], name="analytics_spool_due_idx")]

    def __str__(self) -> str:
        return f"{self.row_count} {self.kind} from {self.created_at:%Y-%m-%d %H:%M:%S}"


class ResultStatus(models.TextChoices):
    OK = "ok", "Up to date"
    FAILED = "failed", "Last refresh failed"


class ExperimentResult(models.Model):
    """The latest results document of an experiment, replaced in place by every refresh.

    A refresh that fails keeps the last good ``payload`` and records why (``last_error``) and when, so
    readers always see the newest numbers that could be computed, with a note when they are stale.
    """

    experiment = models.OneToOneField(
        "experiments.Experiment", on_delete=models.CASCADE, related_name="result", help_text="Whose results."
    )
    payload = models.JSONField(
        null=True, blank=True, help_text="The results document of the last successful refresh (see the API)."
    )
    computed_at = models.DateTimeField(null=True, blank=True, help_text="When the payload was computed.")
    status = models.CharField(
        max_length=16,
        choices=ResultStatus.choices,
        default=ResultStatus.OK,
        help_text="How the last refresh went.",
    )
    last_error = models.TextField(blank=True, default="", help_text="Why the last refresh failed, if it did.")
    last_error_at = models.DateTimeField(null=True, blank=True, help_text="When the last refresh failed.")
    duration_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="How long the last successful refresh took, in milliseconds."
    )
    refreshed_by = models.CharField(
        max_length=150,
        blank=True,
        default="",
        help_text="Who asked for the last refresh: a user, the schedule, a command.",
    )
    rollup_state = models.JSONField(
        null=True,
        blank=True,
        help_text="What the last successful refresh left for the next one to be incremental: its "
        'watermark, analysis time, state keys and units (docs/analysis.md, "Incremental refresh").',
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "experiment result"
        verbose_name_plural = "experiment results"

    def __str__(self) -> str:
        when = f"{self.computed_at:%Y-%m-%d %H:%M:%S}" if self.computed_at else "never computed"
        return f"Results of {self.experiment_id} ({when})"

    @property
    def document(self) -> ResultsDocument | None:
        """The stored payload as a :class:`ResultsDocument`; None when never computed successfully.

        Readers outside ``analytics`` (the experiment list) reach it through the reverse one-to-one
        ``experiment.result.document``, so they read the type without importing this app.
        """
        return ResultsDocument.from_dict(self.payload) if self.payload else None
