"""Incremental refresh: the state a refresh leaves for the next one, and the results schedule every
RESULTS_REFRESH_INTERVAL_MINUTES (5 by default; it was 15)."""

from django.conf import settings
from django.db import migrations, models

from config.periodic_tasks import interval_task

ROLLUP_TASK = {"name": "roll up running experiments", "task": "analytics.tasks.running_experiments_rollup"}
DESCRIPTION = (
    "Refreshes the results of every running experiment (one task per experiment), incrementally: each "
    "reads only what arrived since the last. Change the interval here; results can also be refreshed "
    "from the API or with `manage.py rollup [--full]`."
)
# Backwards: the schedule of 0004 again (every 15 minutes), not no schedule at all.
forwards = interval_task(
    **ROLLUP_TASK, every_minutes=settings.RESULTS_REFRESH_INTERVAL_MINUTES, description=DESCRIPTION
)
backwards = interval_task(**ROLLUP_TASK, every_minutes=15, description=DESCRIPTION)


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0005_spool_payload_as_json_text"),
    ]

    operations = [
        migrations.AddField(
            model_name="experimentresult",
            name="rollup_state",
            field=models.JSONField(
                blank=True,
                help_text="What the last successful refresh left for the next one to be incremental: its "
                'watermark, analysis time, state keys and units (docs/analysis.md, "Incremental refresh").',
                null=True,
            ),
        ),
        migrations.RunPython(forwards.code, backwards.code),
    ]
