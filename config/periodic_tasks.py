"""Default periodic tasks, installed by data migrations (django-celery-beat; editable in the admin).

One helper for the apps' schedule migrations, so each of them states only what it schedules. It uses
the historical models the migration hands it (``apps.get_model``), never the current ones, so what a
migration did stays what it does.
"""

from django.db import migrations


def interval_task(*, name: str, task: str, every_minutes: int, description: str) -> migrations.RunPython:
    """A migration operation that schedules ``task`` every ``every_minutes`` minutes as ``name`` (and
    removes it when migrated backwards). Running it again updates the task in place."""

    def schedule(apps, schema_editor) -> None:
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        interval = IntervalSchedule.objects.filter(every=every_minutes, period="minutes").first()
        if interval is None:
            interval = IntervalSchedule.objects.create(every=every_minutes, period="minutes")
        PeriodicTask.objects.update_or_create(
            name=name,
            defaults={"task": task, "interval": interval, "enabled": True, "description": description},
        )

    def unschedule(apps, schema_editor) -> None:
        apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=name).delete()

    return migrations.RunPython(schedule, unschedule)
