"""Product managers create, change, start and stop holdouts, as they do experiments."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Product managers"
CODENAMES = ["add_holdout", "change_holdout", "delete_holdout", "view_holdout"]


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
    dependencies = [("features", "0015_holdouts")]

    operations = [migrations.RunPython(grant, revoke)]
