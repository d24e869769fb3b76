"""The server's side of the flag editor: the data it reads (features.rule_editor), the page that loads
it, and the formset posts it makes (the editor writes the rules formset's fields, so these are the
posts a browser sends after editing cards)."""

import json
import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from experiments.services import experiment_start
from features.models import Environment, Feature
from features.rule_editor import MAX_ATTRIBUTES, attribute_suggestions, condition_attributes, rule_editor_data
from features.services import feature_create
from tests.factories import ExperimentFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def flag(superuser) -> Feature:
    experiment = ExperimentFactory(
        key="checkout_button", name="Checkout button", variants=["control", "green"]
    )
    experiment_start(experiment=experiment, user=None)
    return feature_create(
        user=superuser, key="new_checkout", name="New checkout", type="boolean", default_value=False,
        environments={"production": {"enabled": True, "rules": [
            {"type": "force", "condition": {"plan": "internal"}, "value": True},
            {"type": "rollout", "condition": {"$or": [{"country": "DE"}, {"beta": True}]}, "value": True,
             "coverage": 0.5},
            {"type": "experiment", "experiment": "checkout_button", "values": {"control": False, "green": True}},
        ]}},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "names"),
    [
        ({}, []),
        ({"plan": "pro", "age": {"$gte": 18}}, ["plan", "age"]),
        ({"$or": [{"country": "DE"}, {"$and": [{"user.beta": True}]}]}, ["country", "user.beta"]),
        ({"$nor": [{"a": 1}], "$not": {"b": 2}}, ["a", "b"]),
        ({"$groups": {"$inGroup": "x"}, "$or": "not a list"}, []),
        ([{"plan": "pro"}], []),
        (None, []),
    ],
)
def test_condition_attributes__logical_operators__the_attribute_names_tested(condition, names):
    assert list(condition_attributes(condition)) == names


def test_attribute_suggestions__many_conditions__distinct_sorted_and_capped():
    conditions = [{"Plan": 1}, {"country": 1}, {"plan": 1}, {"country": {"$in": ["DE"]}}]
    assert attribute_suggestions(conditions) == ["country", "Plan", "plan"]
    assert len(attribute_suggestions([{f"a{i}": 1} for i in range(MAX_ATTRIBUTES + 5)])) == MAX_ATTRIBUTES


def test_rule_editor_data__environments_experiments_with_variants_and_attributes(flag):
    ExperimentFactory(key="archived_one", status="archived")
    draft = ExperimentFactory(key="pricing", variants=["control", "a", "b"])
    data = rule_editor_data(flag)
    assert data["feature_type"] == "boolean"
    assert [env["key"] for env in data["environments"]] == ["development", "staging", "production"]
    # running first, then drafts; archived ones left out (none of this flag's rules uses one)
    assert [(e["key"], e["status"]) for e in data["experiments"]] == [
        ("checkout_button", "running"),
        ("pricing", "draft"),
    ]
    checkout = data["experiments"][0]
    assert checkout["label"] == "Checkout button (checkout_button)"
    assert checkout["variants"] == [
        {"key": "control", "name": "Control", "weight": 1.0},
        {"key": "green", "name": "Green", "weight": 1.0},
    ]
    assert [v["key"] for v in data["experiments"][1]["variants"]] == ["control", "a", "b"]
    assert data["experiments"][1]["id"] == draft.pk
    assert data["attributes"] == ["beta", "country", "plan"]
    json.dumps(data)  # JSON-able for json_script


def test_rule_editor_data__archived_experiment_a_rule_uses__still_listed(flag):
    experiment = flag.rules.get(type="experiment").experiment
    type(experiment).objects.filter(pk=experiment.pk).update(status="archived")
    assert [e["key"] for e in rule_editor_data(flag)["experiments"]] == ["checkout_button"]


def test_rule_editor_data__add_page__default_type_and_no_rules():
    data = rule_editor_data(None)
    assert data["feature_type"] == "boolean"
    assert data["experiments"] == [] and data["attributes"] == []


def _editor_data(page: str) -> dict:
    match = re.search(r'<script id="rule-editor-data" type="application/json">(.*?)</script>', page, re.S)
    assert match, "the editor's data is not on the page"
    return json.loads(match.group(1))


def test_feature_change_page__editor_loaded_after_the_formset(admin_client, flag):
    page = admin_client.get(reverse("admin:features_feature_change", args=[flag.pk])).content.decode()
    assert _editor_data(page)["experiments"][0]["key"] == "checkout_button"
    assert "features/rule_editor.css" in page
    # The scripts come after the rules formset they read, builder first
    assert (
        page.index('id="rules-group"')
        < page.index("features/condition_builder.js")
        < page.index("features/rule_editor.js")
    )
    # The formset is still there, for the editor to write into (and for browsers without JavaScript)
    assert 'name="rules-0-condition"' in page and 'id="rules-empty"' in page


def test_feature_add_page__editor_loaded(admin_client):
    page = admin_client.get(reverse("admin:features_feature_add")).content.decode()
    assert _editor_data(page)["environments"]
    assert "features/rule_editor.js" in page


def test_feature_change_page__view_only_user__table_without_editor(client, flag):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_feature", "view_featurerule"]))
    client.force_login(viewer)
    page = client.get(reverse("admin:features_feature_change", args=[flag.pk])).content.decode()
    assert "rule-editor-data" not in page and "rule_editor.js" not in page
    assert "Serve true to users where" in page  # the table's sentences


def _post(flag: Feature, rows: list[dict[str, str]], *, initial: int) -> dict[str, str]:
    """The change form as the editor posts it: its rows as written by the cards."""
    data = {
        "name": flag.name,
        "key": flag.key,
        "type": flag.type,
        "default_value": json.dumps(flag.default_value),
        "environment_settings-TOTAL_FORMS": "0",
        "environment_settings-INITIAL_FORMS": "0",
        "environment_settings-MIN_NUM_FORMS": "0",
        "environment_settings-MAX_NUM_FORMS": "1000",
        "rules-TOTAL_FORMS": str(len(rows)),
        "rules-INITIAL_FORMS": str(initial),
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "prerequisites-TOTAL_FORMS": "0",
        "prerequisites-INITIAL_FORMS": "0",
        "prerequisites-MIN_NUM_FORMS": "0",
        "prerequisites-MAX_NUM_FORMS": "1000",
        "_continue": "1",
    }
    for index, row in enumerate(rows):
        data.update({f"rules-{index}-{name}": value for name, value in row.items()})
    return data


def _existing(flag: Feature) -> list[dict[str, str]]:
    rows = []
    for rule in flag.rules.order_by("position", "id"):
        rows.append({
            "id": str(rule.pk), "feature": str(flag.pk), "environment": str(rule.environment_id),
            "position": str(rule.position), "type": rule.type, "condition": json.dumps(rule.condition),
            "value": "" if rule.value is None else json.dumps(rule.value),
            "coverage": "" if rule.coverage is None else str(rule.coverage),
            "experiment": str(rule.experiment_id or ""),
            "variant_values": "" if rule.variant_values is None else json.dumps(rule.variant_values),
        })  # fmt: skip
    return rows


def test_editor_post__cards_reordered_one_removed_one_added_and_dropped__saved_in_the_cards_order(
    admin_client, flag
):
    # Given the editor's writes: the rollout moved first, the force rule removed (its checkbox
    # ticked), a new rule added, and another new rule added then removed (a hidden DELETE, half-filled)
    production = Environment.objects.get(key="production")
    rows = _existing(flag)
    rows[1]["position"], rows[2]["position"] = "0", "1"
    rows[0]["DELETE"] = "on"
    added = {"environment": str(production.pk), "position": "2", "type": "force",
             "condition": json.dumps({"country": {"$in": ["DE", "FR"]}, "plan": "pro"}), "value": "true",
             "coverage": "", "experiment": "", "variant_values": ""}  # fmt: skip
    dropped = {"environment": str(production.pk), "position": "3", "type": "force", "condition": "{",
               "value": "", "coverage": "", "experiment": "", "variant_values": "", "DELETE": "on"}  # fmt: skip
    response = admin_client.post(
        reverse("admin:features_feature_change", args=[flag.pk]),
        _post(flag, [*rows, added, dropped], initial=3),
    )
    # Then saved, in the cards' order, without the removed rules
    assert response.status_code == 302, response.content.decode()[:2000]
    saved = [(r.position, r.type, r.condition) for r in flag.rules.order_by("position")]
    assert saved == [
        (0, "rollout", {"$or": [{"country": "DE"}, {"beta": True}]}),
        (1, "experiment", {}),
        (2, "force", {"country": {"$in": ["DE", "FR"]}, "plan": "pro"}),
    ]


def test_editor_post__condition_refused__the_rows_error_is_next_to_its_row(admin_client, flag):
    rows = _existing(flag)
    rows[1]["condition"] = json.dumps({"plan": {"$bogus": 1}})
    response = admin_client.post(
        reverse("admin:features_feature_change", args=[flag.pk]), _post(flag, rows, initial=3)
    )
    page = response.content.decode()
    assert response.status_code == 200
    # The editor reads a row's errors from the error row right before it (Django's tabular inline)
    match = re.search(
        r'<tr class="row-form-errors">(.*?)</tr>\s*<tr class="form-row[^"]*"\s*id="rules-(\d+)"', page, re.S
    )
    assert match and match.group(2) == "1" and "$bogus" in match.group(1)


def _try_draft(client, flag: Feature, rules: list | str, **params):
    body = {"environment": "production", "unit_id": "user-42", "attributes": "{}", **params}
    body["rules"] = rules if isinstance(rules, str) else json.dumps(rules)
    return client.post(reverse("admin:features_feature_try", args=[flag.pk]), body)


def test_try_it_with_unsaved_rules__evaluates_them_and_saves_nothing(admin_client, flag):
    # Given the saved flag leaves a pro user in Italy to the experiment rule...
    saved = admin_client.get(
        reverse("admin:features_feature_try", args=[flag.pk]),
        {"environment": "production", "unit_id": "user-42", "attributes": '{"country": "IT", "plan": "pro"}'},
    ).json()
    assert (saved["reason"], saved["variant"]) == ("SPLIT", "green")
    # When "try it" is asked with the editor's unsaved rules, a new first rule for Italy
    draft = [
        {"type": "force", "condition": {"country": {"$in": ["IT"]}, "plan": "pro"}, "value": True},
        {"type": "rollout", "condition": {}, "value": True, "coverage": 0.0},
        {"type": "experiment", "experiment": "checkout_button", "values": {"control": False, "green": True}},
    ]
    body = _try_draft(admin_client, flag, draft, attributes='{"country": "IT", "plan": "pro"}').json()
    # Then the draft decides, says so, and nothing was saved
    assert (body["value"], body["variant"], body["reason"]) == (True, "rule-1", "TARGETING_MATCH")
    assert body["explanation"].endswith("Rule 1 of Production. (The rules as edited, not saved.)")
    assert flag.rules.count() == 3 and flag.rules.get(position=0).condition == {"plan": "internal"}
    # and the rest of the draft: coverage 0 lets everyone through to the experiment rule
    body = _try_draft(admin_client, flag, draft, attributes='{"country": "FR"}').json()
    assert body["reason"] == "SPLIT" and body["variant"] in ("control", "green")


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ("[{", "Not valid JSON"),
        ('{"type": "force"}', "must be a JSON list"),
        ("[1]", "Production rule 1: a rule is a JSON object"),
        ([{"type": "force", "value": True}, {"type": "force", "condition": {"a": {"$bogus": 1}}, "value": True}],
         "Production rule 2: condition: a.$bogus"),
        ([{"type": "force", "value": "yes"}], "Production rule 1: 'yes' is not"),
        ([{"type": "experiment", "experiment": "nope", "values": {}}], "there is no experiment “nope”"),
        ([{"type": "force", "value": True}] * 201, "At most 200 rules"),
    ],
)  # fmt: skip
def test_try_it_with_unsaved_rules__invalid__400_naming_the_rule(admin_client, flag, rules, fragment):
    response = _try_draft(admin_client, flag, rules)
    assert response.status_code == 400
    assert fragment in " ".join(response.json()["errors"]["rules"])


def test_try_it_with_unsaved_rules__needs_the_csrf_token(flag, superuser):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    assert _try_draft(client, flag, []).status_code == 403
