"""Configuration as code: export_config / import_config and the API's export and import."""

import datetime as dt
import io
import json
import tempfile

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from experiments.models import Experiment, ExperimentStatus
from experiments.services import experiment_create, experiment_start, experiment_stop
from features.config_file.apply import config_import
from features.config_file.export import config_export
from features.config_file.formats import document_dump, document_load
from features.config_file.plan import ConfigFileError
from features.models import Environment, Feature, FeatureRule
from features.services import feature_create
from metrics.models import Metric
from metrics.services import metric_create

pytestmark = pytest.mark.django_db


def build_workspace() -> None:
    """Every kind with the parts a lossless round trip must keep: a custom environment, a ratio metric,
    experiments running in a layer (two slices), stopped with a decision, paused, archived, a
    scheduled draft; flags with every rule type in several environments, prerequisites, tags."""
    Environment.objects.create(
        key="qa", name="QA", description="Testers", position=5, cors_allowed_origins="https://qa.example.com"
    )
    metric_create(user=None, key="orders", name="Orders", type="count", event="order", tags=["shop"])
    metric_create(
        user=None,
        key="revenue_per_order",
        name="Revenue per order",
        type="ratio",
        event="revenue",
        denominator="orders",
        cap_value=500.0,
    )
    metric_create(
        user=None, key="purchase", name="Purchase", type="binomial", event="purchase", window_hours=72
    )
    variants = [
        {"key": "control", "name": "Blue", "weight": 1, "payload": {"color": "blue"}},
        {"key": "green", "name": "Green", "weight": 2, "payload": {"color": "green"}},
    ]
    links = [{"metric": "purchase", "role": "primary"}, {"metric": "revenue_per_order", "role": "guardrail"}]
    first = experiment_create(
        user=None,
        key="checkout_button",
        name="Checkout button",
        hypothesis="Green sells more.",
        variants=variants,
        metrics=links,
        layer="checkout",
        traffic_allocation=0.4,
        targeting={"country": {"$in": ["US", "CA"]}},
        tags=["checkout"],
        analysis_environments=["production", "qa"],
        engine="bayesian",
        prior_mean=0.0,
        prior_stddev=0.3,
    )
    experiment_start(experiment=first, user=None)
    second = experiment_create(
        user=None,
        key="checkout_copy",
        name="Copy",
        variants=variants,
        layer="checkout",
        traffic_allocation=0.3,
    )
    experiment_start(experiment=second, user=None)
    done = experiment_create(
        user=None, key="old_banner", name="Old banner", variants=variants, metrics=links[:1]
    )
    experiment_stop(
        experiment=experiment_start(experiment=done, user=None),
        user=None,
        decision_variant="green",
        reason="won",
    )
    paused = experiment_start(
        experiment=experiment_create(user=None, key="paused_one", name="P", variants=variants), user=None
    )
    from experiments.services import experiment_archive, experiment_pause

    experiment_pause(experiment=paused, user=None)
    experiment_archive(
        experiment=experiment_create(user=None, key="archived_one", name="A", variants=variants), user=None
    )
    experiment_create(
        user=None,
        key="scheduled",
        name="Scheduled",
        variants=variants,
        scheduled_start_at=timezone.now() + dt.timedelta(days=2),
        scheduled_stop_at=timezone.now() + dt.timedelta(days=9),
    )
    feature_create(user=None, key="new_nav", name="New nav", type="boolean", default_value=False)
    feature_create(
        user=None,
        key="checkout_color",
        name="Checkout color",
        type="string",
        default_value="blue",
        tags=["checkout"],
        environments={
            "production": {
                "enabled": True,
                "rules": [
                    {"type": "force", "condition": {"email": {"$regex": "@example\\.com$"}}, "value": "red"},
                    {"type": "rollout", "condition": {"plan": "pro"}, "value": "green", "coverage": 0.25},
                    {
                        "type": "experiment",
                        "condition": {},
                        "experiment": "checkout_button",
                        "values": {"control": "blue", "green": "green"},
                    },
                ],
            },
            "qa": {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": "green"}]},
        },
        prerequisites=[{"feature": "new_nav", "value": True}],
    )


def empty_database() -> None:
    """What a fresh database holds of the configuration: nothing (the default environments included)."""
    Feature.objects.all().delete()
    Experiment.objects.all().delete()
    Metric.objects.exclude(denominator=None).delete()
    Metric.objects.all().delete()
    Environment.objects.all().delete()


def import_text(text: str, **options) -> str:
    out = io.StringIO()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(text)
        handle.flush()
        call_command("import_config", handle.name, stdout=out, **options)
    return out.getvalue()


def export_text(**options) -> str:
    out = io.StringIO()
    call_command("export_config", stdout=out, **options)
    return out.getvalue()


# --- round trip ------------------------------------------------------------------------------------
def test_round_trip__export_empty_database_import_export__identical():
    build_workspace()
    before = export_text()
    started = {e.key: (e.status, e.started_at, e.layer_slice_start) for e in Experiment.objects.all()}

    empty_database()
    assert config_export()["experiments"] == []
    output = import_text(before)

    assert export_text() == before
    after = {e.key: (e.status, e.started_at, e.layer_slice_start) for e in Experiment.objects.all()}
    assert after == started
    assert started["checkout_button"][0] == ExperimentStatus.RUNNING
    assert started["checkout_copy"][2] == pytest.approx(0.4)
    assert "create experiment checkout_button" in output and "create feature checkout_color" in output
    # The same rules serve the same answers: the rules are rows again, in order.
    rules = FeatureRule.objects.filter(feature__key="checkout_color", environment__key="production")
    assert [rule.type for rule in rules] == ["force", "rollout", "experiment"]


def test_round_trip__json_format__same_document():
    build_workspace()
    as_json = export_text(format="json")
    assert json.loads(as_json) == yaml.safe_load(export_text())
    empty_database()
    import_text(as_json)
    assert json.loads(export_text(format="json")) == json.loads(as_json)


def test_import__twice__second_import_has_no_changes():
    build_workspace()
    text = export_text()
    empty_database()
    import_text(text)
    output = import_text(text)
    assert output.startswith("No changes")


def test_import__same_database__no_changes_and_nothing_in_history():
    build_workspace()
    from features.models import Feature as F

    history = F.history.count()
    assert import_text(export_text()).startswith("No changes")
    assert F.history.count() == history


# --- diff ------------------------------------------------------------------------------------------
def test_dry_run__diff_names_objects_and_fields__writes_nothing():
    build_workspace()
    document = config_export()
    flag = next(f for f in document["features"] if f["key"] == "checkout_color")
    flag["default_value"] = "purple"
    flag["environments"]["qa"]["enabled"] = False
    document["metrics"].append({"key": "signups", "name": "Signups", "type": "count", "event": "signup"})
    before = export_text()

    output = import_text(document_dump(document), dry_run=True)

    assert "create metric signups" in output
    assert "change feature checkout_color" in output
    assert 'default_value: "blue" -> "purple"' in output
    assert "environments.qa.enabled: true -> false" in output
    assert "1 to create, 1 to change, 0 to delete." in output
    assert "Dry run: nothing was written." in output
    assert export_text() == before


def test_import__hand_written_partial_file__only_named_fields_change_and_idempotent():
    build_workspace()
    text = """
version: 1
features:
  - key: checkout_color
    environments:
      qa:
        rules:
          - {type: rollout, value: red, coverage: 0.5}
metrics:
  - key: signups
    name: Signups
    type: count
    event: signup
"""
    first = import_text(text)
    assert "environments.qa.rules" in first and "create metric signups" in first
    flag = Feature.objects.get(key="checkout_color")
    assert flag.rules.filter(environment__key="qa").get().coverage == 0.5
    assert flag.rules.filter(environment__key="production").count() == 3  # untouched
    assert import_text(text).startswith("No changes")


def test_prune__deletes_what_the_file_does_not_name__refuses_a_running_experiment():
    build_workspace()
    document = config_export()
    document["features"] = [f for f in document["features"] if f["key"] != "new_nav"]
    for flag in document["features"]:
        flag["prerequisites"] = []
    document["experiments"] = [e for e in document["experiments"] if e["key"] != "archived_one"]
    output = import_text(document_dump(document), prune=True)
    assert "delete feature new_nav" in output and "delete experiment archived_one" in output
    assert not Feature.objects.filter(key="new_nav").exists()

    document["experiments"] = [e for e in document["experiments"] if e["key"] != "checkout_copy"]
    with pytest.raises(CommandError, match="checkout_copy.*running"):
        import_text(document_dump(document), prune=True)
    assert Experiment.objects.filter(key="checkout_copy").exists()


# --- all or nothing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (
            lambda d: d["experiments"][-1]["variants"][0].update(weight=-1),
            r"experiment “\w+”, variants.*weight",
        ),
        (
            lambda d: d["features"][0]["environments"]["production"]["rules"][2].update(experiment="nope"),
            r"feature “checkout_color”, environments: .*no experiment “nope”",
        ),
        (lambda d: d["metrics"][-1].update(type="median"), r"metric “\w+”, type"),
        (lambda d: d["experiments"][0].update(traffic_alocation=0.5), r"unknown field traffic_alocation"),
        (lambda d: d["features"][0].update(default_value=3), r"feature “checkout_color”, default_value"),
        (lambda d: d["features"].append(dict(d["features"][0])), r"feature “checkout_color”: appears twice"),
        (lambda d: d.update(version=7), r"version must be 1"),
    ],
)
def test_import__tampered_file__refused_with_the_reason__nothing_written(tamper, reason):
    # Given an export imported into an empty database, with one object spoiled
    build_workspace()
    document = config_export()
    # A new metric too: it would be created first if the import were not all or nothing.
    document["metrics"].insert(0, {"key": "aaa_first", "name": "First", "type": "count", "event": "x"})
    tamper(document)
    empty_database()

    with pytest.raises(CommandError, match=reason) as refused:
        import_text(document_dump(document))

    assert str(refused.value).startswith("Nothing was imported")
    assert (
        not Metric.objects.exists() and not Experiment.objects.exists() and not Environment.objects.exists()
    )


def test_import__status_that_cannot_be_reached__refused_by_the_lifecycle():
    build_workspace()
    document = config_export()
    next(e for e in document["experiments"] if e["key"] == "old_banner")["status"] = "running"
    with pytest.raises(ConfigFileError, match="old_banner.*cannot go from stopped to running"):
        config_import(document)
    assert Experiment.objects.get(key="old_banner").status == ExperimentStatus.STOPPED


def test_import__locked_field_of_a_running_experiment__409_reason_named():
    build_workspace()
    document = config_export()
    next(e for e in document["experiments"] if e["key"] == "checkout_button")["targeting"] = {}
    with pytest.raises(ConfigFileError, match="checkout_button.*targeting.*cannot change"):
        config_import(document)


def test_import__unreadable_file__refused():
    with pytest.raises(CommandError, match="not valid YAML"):
        import_text("version: 1\nmetrics: [\n")


def test_document_load__unquoted_timestamp__read_as_the_api_text():
    assert document_load("at: 2026-01-31T10:00:00Z")["at"] == "2026-01-31T10:00:00Z"


# --- the API ---------------------------------------------------------------------------------------
def test_api_export__yaml_and_json(pm_client):
    build_workspace()
    as_json = pm_client.get(reverse("config-export"))
    assert as_json.status_code == 200 and as_json.json() == config_export()
    as_yaml = pm_client.get(reverse("config-export"), {"format": "yaml"})
    assert as_yaml["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.content) == config_export()


def test_api_import__dry_run_then_apply(superuser, api_client):
    api_client.force_authenticate(superuser)
    build_workspace()
    document = config_export()
    document["metrics"].append({"key": "signups", "name": "Signups", "type": "count", "event": "signup"})
    url = reverse("config-import")

    dry = api_client.post(f"{url}?dry_run=1", document, format="json")
    assert dry.status_code == 200, dry.json()
    assert dry.json()["applied"] is False
    assert dry.json()["changes"] == [
        {
            "kind": "metric",
            "key": "signups",
            "action": "create",
            "fields": [
                {"field": "name", "old": None, "new": "Signups"},
                {"field": "type", "old": None, "new": "count"},
                {"field": "event", "old": None, "new": "signup"},
            ],
        }
    ]
    assert not Metric.objects.filter(key="signups").exists()

    yaml_body = document_dump(document)
    applied = api_client.post(url, data=yaml_body, content_type="application/yaml")
    assert applied.status_code == 200, applied.json()
    assert applied.json()["applied"] is True and applied.json()["summary"] == {
        "create": 1,
        "change": 0,
        "delete": 0,
    }
    assert Metric.objects.filter(key="signups").exists()


def test_api_import__bad_object__400_names_it(superuser, api_client):
    api_client.force_authenticate(superuser)
    document = {"version": 1, "metrics": [{"key": "bad", "name": "Bad", "type": "median", "event": "x"}]}
    response = api_client.post(reverse("config-import"), document, format="json")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert (error["kind"], error["key"], error["field"]) == ("metric", "bad", "type")
    assert not Metric.objects.exists()


def test_api_import__without_the_permissions__403(pm_client):
    # Product managers may change flags and experiments, but an import may delete and replace any
    # object of every kind: it needs each kind's add and change permissions, environments included.
    response = pm_client.post(reverse("config-import"), {"version": 1}, format="json")
    assert response.status_code == 403


def test_api__paths_without_the_trailing_slash(superuser, api_client):
    api_client.force_authenticate(superuser)
    assert api_client.get("/api/v1/config/export").status_code == 200
    response = api_client.post("/api/v1/config/import?dry_run=1", {"version": 1}, format="json")
    assert response.status_code == 200 and response.json()["applied"] is False


def test_import__user_option__history_names_the_operator():
    from tests.factories import UserFactory

    UserFactory(username="alice")
    import_text(
        "version: 1\nmetrics:\n  - {key: signups, name: Signups, type: count, event: signup}\n", user="alice"
    )
    record = Metric.history.filter(key="signups").latest("history_date")
    assert record.history_type == "+" and record.history_user.username == "alice"
    with pytest.raises(CommandError, match="no user 'nobody'"):
        import_text("version: 1\n", user="nobody")


def test_export_command__output_file__written(tmp_path):
    build_workspace()
    target = tmp_path / "workspace.json"
    call_command("export_config", output=str(target), stderr=io.StringIO())
    assert json.loads(target.read_text()) == config_export()
