"""Roll up running experiments every 15 minutes (django-celery-beat; editable in the admin)."""

from django.db import migrations

TASK_NAME = "roll up running experiments"


def schedule_rollup(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_15_minutes = IntervalSchedule.objects.filter(every=15, period="minutes").first()
    if every_15_minutes is None:
        every_15_minutes = IntervalSchedule.objects.create(every=15, period="minutes")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": "analytics.tasks.running_experiments_rollup",
            "interval": every_15_minutes,
            "enabled": True,
            "description": (
                "Recomputes the results of every running experiment (one task per experiment). "
                "Change the interval here; results can also be refreshed from the API or with "
                "`manage.py rollup`."
            ),
        },
    )


def unschedule_rollup(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0003_experiment_result"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule_rollup, unschedule_rollup)]
