from django.db import migrations

DEFAULT_ENVIRONMENTS = [
    ("development", "Development", "Engineers' machines and CI.", 0),
    ("staging", "Staging", "Pre-production checks.", 1),
    ("production", "Production", "What customers see.", 2),
]


def create_environments(apps, schema_editor):
    Environment = apps.get_model("features", "Environment")
    for key, name, description, position in DEFAULT_ENVIRONMENTS:
        Environment.objects.get_or_create(
            key=key, defaults={"name": name, "description": description, "position": position}
        )


def remove_environments(apps, schema_editor):
    Environment = apps.get_model("features", "Environment")
    Environment.objects.filter(key__in=[key for key, *_ in DEFAULT_ENVIRONMENTS], sdk_keys__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("features", "0001_initial")]
    operations = [migrations.RunPython(create_environments, remove_environments)]
