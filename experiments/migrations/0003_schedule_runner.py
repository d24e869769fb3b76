"""Run experiments' scheduled starts and stops every minute (django-celery-beat; editable in the admin)."""

from django.db import migrations

TASK_NAME = "Start and stop scheduled experiments"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute = IntervalSchedule.objects.filter(every=1, period="minutes").first()
    if every_minute is None:
        every_minute = IntervalSchedule.objects.create(every=1, period="minutes")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": "experiments.tasks.experiments_run_schedules",
            "interval": every_minute,
            "enabled": True,
            "description": (
                "Starts drafts whose scheduled start has passed and stops experiments whose scheduled "
                "stop has passed. A start that does not fit in its layer is retried every minute."
            ),
        },
    )


def unschedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0002_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
