from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Product managers"
# Product managers define metrics, experiments and flags, and read everything else.
MODELS = {
    "metrics": ["metric"],
    "experiments": ["experiment", "variant", "experimentmetric"],
    "features": ["feature", "featureenvironment", "featurerule", "featureprerequisite"],
}
READ_ONLY = {"features": ["environment", "sdkkey"]}


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure they exist now.
    for app_label in ("metrics", "experiments", "features"):
        app_config = apps.get_app_config(app_label)
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    codenames = []
    for app_label, models in MODELS.items():
        for model in models:
            codenames += [(app_label, f"{action}_{model}") for action in ("add", "change", "delete", "view")]
    for app_label, models in READ_ONLY.items():
        codenames += [(app_label, f"view_{model}") for model in models]
    for app_label, codename in codenames:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("features", "0002_default_environments"),
        ("metrics", "0001_initial"),
        ("experiments", "0002_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_group, remove_group)]
