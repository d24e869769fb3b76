"""The ingestion spool: accepted rows waiting for ClickHouse.

The API acknowledges a batch of events or exposures only once its rows are in ClickHouse or here. When
ClickHouse cannot be reached, the rows are written to this table (PostgreSQL in production) in the same
call, and ``analytics.tasks.spool_drain`` inserts them later, deleting a batch only after its insert
succeeded.
"""

from django.db import models
from django.utils import timezone


class SpoolKind(models.TextChoices):
    EVENTS = "events", "Events"
    EXPOSURES = "exposures", "Exposures"


class SpoolBatch(models.Model):
    """One batch of rows that could not be inserted into ClickHouse yet."""

    kind = models.CharField(max_length=16, choices=SpoolKind.choices, help_text="Which table the rows go to.")
    payload = models.JSONField(help_text="The rows, in the table's column order (JSON values).")
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
