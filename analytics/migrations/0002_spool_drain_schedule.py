"""Schedule the spool drain every minute (django-celery-beat; editable in the admin)."""

from django.db import migrations

from config.periodic_tasks import interval_task


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0001_spool_batch"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        interval_task(
            name="Drain the ingestion spool",
            task="analytics.tasks.spool_drain",
            every_minutes=1,
            description=(
                "Inserts events and exposures accepted while ClickHouse was unreachable. "
                "Each batch backs off on its own; safe to run at any time."
            ),
        )
    ]
