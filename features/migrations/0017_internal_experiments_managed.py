"""Mark the internal experiments that holdouts and safe rollouts created before experiments had an
owner field (``Experiment.managed_by``), so the experiments' services refuse to change them too."""

from django.db import migrations


def mark(apps, schema_editor):
    Holdout = apps.get_model("features", "Holdout")
    SafeRollout = apps.get_model("features", "SafeRollout")
    Experiment = apps.get_model("experiments", "Experiment")
    for holdout in Holdout.objects.exclude(experiment=None):
        Experiment.objects.filter(pk=holdout.experiment_id).update(
            managed_by="holdout", managed_by_name=holdout.key
        )
    for rollout in SafeRollout.objects.select_related("rule__feature", "rule__environment"):
        Experiment.objects.filter(pk=rollout.experiment_id).update(
            managed_by="safe_rollout",
            managed_by_name=f"of {rollout.rule.feature.key} in {rollout.rule.environment.key}",
        )


def unmark(apps, schema_editor):
    apps.get_model("experiments", "Experiment").objects.update(managed_by="", managed_by_name="")


class Migration(migrations.Migration):
    dependencies = [("features", "0016_holdout_permissions"), ("experiments", "0008_managed_by")]

    operations = [migrations.RunPython(mark, unmark)]
