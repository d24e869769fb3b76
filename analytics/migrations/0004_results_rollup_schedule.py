"""Roll up running experiments every 15 minutes (django-celery-beat; editable in the admin)."""

from django.db import migrations

from config.periodic_tasks import interval_task


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0003_experiment_result"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        interval_task(
            name="roll up running experiments",
            task="analytics.tasks.running_experiments_rollup",
            every_minutes=15,
            description=(
                "Recomputes the results of every running experiment (one task per experiment). "
                "Change the interval here; results can also be refreshed from the API or with "
                "`manage.py rollup`."
            ),
        )
    ]
