"""Configuration as code with holdouts and internal experiments: holdouts are exported and imported
(lossless, idempotent, shown by a dry run); a holdout's and a safe rollout's internal experiments are
not exported as experiments, and come back with their holdout or flag rule."""

import datetime as dt

import pytest
import yaml

from experiments.models import Experiment, ExperimentStatus
from features.config_file.export import config_export
from features.config_file.formats import document_dump
from features.holdouts.models import Holdout, HoldoutStatus
from features.holdouts.services import holdout_create, holdout_start, holdout_stop
from features.models import Environment, Feature, SafeRollout
from features.services import feature_create
from metrics.models import Metric
from tests.features.test_config_file import build_workspace, export_text, import_text

pytestmark = pytest.mark.django_db

STARTED = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
STOPPED = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.UTC)


def build_holdouts() -> None:
    """The config_file workspace, a flag under a safe rollout, and holdouts in each status: a running
    one over a flag and an experiment in two environments, a stopped one, a draft."""
    build_workspace()
    feature_create(
        user=None,
        key="new_search",
        name="New search",
        type="boolean",
        default_value=False,
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {
                        "type": "rollout",
                        "condition": {},
                        "value": True,
                        "coverage": 0.2,
                        "safe_rollout": {"metrics": ["purchase"], "alpha": 0.05, "finish_after_hours": None},
                    }
                ],
            }
        },
    )
    running = holdout_create(
        user=None,
        key="q4",
        name="Q4 holdout",
        description="Everything shipped in Q4",
        percentage=7.5,
        hash_seed="q4-seed",
        hash_attribute="company_id",
        environments=["production", "qa"],
        features=[Feature.objects.get(key="checkout_color")],
        experiments=[Experiment.objects.get(key="checkout_copy")],
        metrics=[Metric.objects.get(key="purchase"), Metric.objects.get(key="orders")],
    )
    holdout_start(holdout=running, user=None, now=STARTED)
    stopped = holdout_create(user=None, key="q3", name="Q3 holdout", percentage=5)
    holdout_stop(holdout=holdout_start(holdout=stopped, user=None, now=STARTED), user=None, now=STOPPED)
    holdout_create(user=None, key="q1_2027", name="Next", features=[Feature.objects.get(key="new_nav")])


def empty_database() -> None:
    Holdout.objects.all().delete()
    Feature.objects.all().delete()  # its rules' safe rollouts go with them
    Experiment.objects.all().delete()
    Metric.objects.exclude(denominator=None).delete()
    Metric.objects.all().delete()
    Environment.objects.all().delete()


def test_export__holdouts_in_the_document__internal_experiments_not():
    build_holdouts()

    document = config_export()

    assert [h["key"] for h in document["holdouts"]] == ["q1_2027", "q3", "q4"]
    q4 = next(h for h in document["holdouts"] if h["key"] == "q4")
    assert q4 == {
        "key": "q4",
        "name": "Q4 holdout",
        "description": "Everything shipped in Q4",
        "status": "running",
        "percentage": 7.5,
        "hash_seed": "q4-seed",
        "hash_attribute": "company_id",
        "environments": ["production", "qa"],
        "features": ["checkout_color"],
        "experiments": ["checkout_copy"],
        "metrics": sorted(q4["metrics"]),
        "started_at": q4["started_at"],
        "stopped_at": None,
    }
    assert sorted(q4["metrics"]) == ["orders", "purchase"]
    keys = [e["key"] for e in document["experiments"]]
    assert "holdout-q4" not in keys and "holdout-q3" not in keys
    assert not [key for key in keys if key.startswith("safe-rollout-")]
    assert Experiment.objects.filter(managed_by__gt="").count() == 3  # two holdouts' and a safe rollout's


def test_round_trip__export_empty_database_import_export__identical_with_internal_experiments_back():
    build_holdouts()
    before = export_text()
    internal = {
        e.key: (e.status, e.started_at, e.stopped_at, e.traffic_allocation, e.hash_seed, e.hash_attribute)
        for e in Experiment.objects.filter(managed_by="holdout")
    }

    empty_database()
    output = import_text(before)

    assert export_text() == before
    assert "create holdout q4" in output and "create holdout q3" in output
    after = {
        e.key: (e.status, e.started_at, e.stopped_at, e.traffic_allocation, e.hash_seed, e.hash_attribute)
        for e in Experiment.objects.filter(managed_by="holdout")
    }
    assert after == internal
    assert internal["holdout-q4"] == (ExperimentStatus.RUNNING, STARTED, None, 0.15, "q4-seed", "company_id")
    assert internal["holdout-q3"][:3] == (ExperimentStatus.STOPPED, STARTED, STOPPED)
    q4 = Holdout.objects.get(key="q4")
    assert (q4.status, q4.started_at, q4.experiment.key) == (HoldoutStatus.RUNNING, STARTED, "holdout-q4")
    # The safe rollout came back with its flag rule, with a new internal experiment.
    assert SafeRollout.objects.get().rule.feature.key == "new_search"


def test_import__twice__second_has_no_changes():
    build_holdouts()
    text = export_text()
    empty_database()
    import_text(text)

    assert import_text(text).startswith("No changes")


def test_dry_run__holdout_changes_named_field_by_field__nothing_written():
    build_holdouts()
    document = config_export()
    q1 = next(h for h in document["holdouts"] if h["key"] == "q1_2027")
    q1["percentage"] = 10.0
    q1["experiments"] = ["checkout_button"]
    q1["status"] = "running"
    q1["started_at"] = STARTED.isoformat()
    before = export_text()

    output = import_text(document_dump(document), dry_run=True)

    assert "change holdout q1_2027" in output
    assert "    percentage: 5.0 -> 10.0" in output
    assert '    experiments: [] -> ["checkout_button"]' in output
    assert '    status: "draft" -> "running"' in output
    assert "0 to create, 1 to change, 0 to delete." in output
    assert export_text() == before

    import_text(document_dump(document))
    started = Holdout.objects.get(key="q1_2027")
    assert (started.status, started.started_at, started.percentage) == (HoldoutStatus.RUNNING, STARTED, 10.0)
    assert started.experiment.started_at == STARTED


def test_import__locked_field_of_a_running_holdout__refused_naming_it():
    build_holdouts()
    document = config_export()
    next(h for h in document["holdouts"] if h["key"] == "q4")["percentage"] = 20.0

    with pytest.raises(Exception) as caught:
        import_text(document_dump(document))

    assert "holdout “q4”, percentage" in str(caught.value)
    assert Holdout.objects.get(key="q4").percentage == 7.5


def test_import__an_internal_experiment_named_as_an_experiment__refused_naming_its_holdout():
    build_holdouts()
    text = yaml.safe_dump({"version": 1, "experiments": [{"key": "holdout-q4", "name": "Mine now"}]})

    with pytest.raises(Exception) as caught:
        import_text(text)

    assert "This experiment belongs to holdout q4" in str(caught.value)


def test_prune__deletes_a_draft_holdout_not_in_the_file__keeps_internal_experiments():
    build_holdouts()
    document = config_export()
    document["holdouts"] = [h for h in document["holdouts"] if h["key"] != "q1_2027"]

    output = import_text(document_dump(document), prune=True)

    assert "delete holdout q1_2027" in output and "delete experiment" not in output
    assert not Holdout.objects.filter(key="q1_2027").exists()
    assert Experiment.objects.filter(key="holdout-q4", status=ExperimentStatus.RUNNING).exists()
