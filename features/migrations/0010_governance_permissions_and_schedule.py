"""Product managers may see, approve and reject change requests and schedule flag changes; the
scheduled-changes runner runs every minute (django-celery-beat; editable in the admin)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from config.periodic_tasks import interval_task

GROUP = "Product managers"
CODENAMES = [
    "view_changerequest",
    "approve_changerequest",
    "add_scheduledchange",
    "change_scheduledchange",
    "view_scheduledchange",
]


def grant(apps, schema_editor):
    app_config = apps.get_app_config("features")
    app_config.models_module = True
    create_permissions(app_config, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    for codename in CODENAMES:
        group.permissions.add(Permission.objects.get(content_type__app_label="features", codename=codename))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name=GROUP).first()
    if group is not None:
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="features", codename__in=CODENAMES)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("features", "0009_governance"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(grant, revoke),
        interval_task(
            name="Run scheduled flag changes",
            task="features.tasks.scheduled_changes_run",
            every_minutes=1,
            description=(
                "Switches flags on or off and sets rollout coverage when a scheduled change's time has "
                "come. A change that no longer fits (its rule is gone) is marked failed with the reason."
            ),
        ),
    ]
