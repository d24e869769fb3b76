"""Schedule the spool drain every minute (django-celery-beat; editable in the admin)."""

from django.db import migrations

TASK_NAME = "Drain the ingestion spool"


def schedule_spool_drain(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute = IntervalSchedule.objects.filter(every=1, period="minutes").first()
    if every_minute is None:
        every_minute = IntervalSchedule.objects.create(every=1, period="minutes")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": "analytics.tasks.spool_drain",
            "interval": every_minute,
            "enabled": True,
            "description": (
                "Inserts events and exposures accepted while ClickHouse was unreachable. "
                "Each batch backs off on its own; safe to run at any time."
            ),
        },
    )


def unschedule_spool_drain(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0001_spool_batch"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule_spool_drain, unschedule_spool_drain)]
