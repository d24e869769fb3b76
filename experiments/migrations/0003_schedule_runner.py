"""Run experiments' scheduled starts and stops every minute (django-celery-beat; editable in the admin)."""

from django.db import migrations

from config.periodic_tasks import interval_task


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0002_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        interval_task(
            name="Start and stop scheduled experiments",
            task="experiments.tasks.experiments_run_schedules",
            every_minutes=1,
            description=(
                "Starts drafts whose scheduled start has passed and stops experiments whose scheduled "
                "stop has passed. A start that does not fit in its layer is retried every minute."
            ),
        )
    ]
