"""The randomization unit end to end: fields and validation (API), evaluation, exposures, and the
GrowthBook payload evaluated by GrowthBook's real SDKs (Python in process, JavaScript under node).

The SDK parts evaluate the payload our server writes, for random units with random attributes whose
hash attribute is a string, a number, empty or missing, and compare with our own evaluation of the
same configuration (``features.evaluation.evaluate_all``, which ``/api/v1/evaluate`` serves; the
live-server test in ``test_growthbook_sdk.py`` covers the HTTP path). Rollout coverages are off the
1/10,000 hash grid, so the Python SDK's ``< coverage`` (ours and the specification's ``<=``) cannot
differ here.
"""

import json
import random
import string
import subprocess

import pytest
from growthbook import GrowthBook
from rest_framework.test import APIClient

from experiments.bucketing import hash_text, in_rollout
from experiments.models import Experiment
from experiments.services import experiment_start
from features import config
from features.evaluation import evaluate_all
from features.growthbook import features_payload
from features.models import Environment
from features.sdk import exposures
from features.services import feature_create, sdk_key_create
from tests.factories import ExperimentFactory

pytestmark = pytest.mark.django_db

FLAGS = ["f_company_rollout", "f_device_rollout", "f_company_experiment", "f_layer", "f_plain"]


@pytest.fixture
def staff(django_user_model) -> APIClient:
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-for-tests")
    api = APIClient()
    api.force_authenticate(user)
    return api


def _flag(key, rules, type_="string", default="off"):
    return feature_create(
        user=None,
        key=key,
        name=key,
        type=type_,
        default_value=default,
        environments={"production": {"enabled": True, "rules": rules}},
    )


@pytest.fixture
def configuration(fresh_decision_plane):
    experiment_start(
        experiment=ExperimentFactory(
            key="exp_company",
            variants=["control", "a", "b"],
            traffic_allocation=0.85,
            hash_attribute="company_id",
            fallback_attribute="device_id",
            targeting={"country": {"$in": ["US", "DE", "FR"]}},
        ),
        user=None,
    )
    experiment_start(
        experiment=ExperimentFactory(
            key="exp_layer",
            variants=["control", "treatment"],
            layer="home",
            traffic_allocation=0.45,
            hash_attribute="device_id",
            fallback_attribute="id",
        ),
        user=None,
    )
    _flag(
        "f_company_rollout",
        [
            {"type": "force", "condition": {"plan": "internal"}, "value": "staff"},
            {
                "type": "rollout",
                "condition": {},
                "value": "on",
                "coverage": 0.43217,
                "hash_attribute": "company_id",
                "fallback_attribute": "id",
            },
        ],
    )
    _flag(
        "f_device_rollout",
        [
            {
                "type": "rollout",
                "condition": {"plan": {"$in": ["pro", "team"]}},
                "value": "pro-on",
                "coverage": 0.61803,
                "hash_attribute": "device_id",
            },
            {"type": "rollout", "condition": {}, "value": "on", "coverage": 0.27183},
        ],
    )
    _flag(
        "f_company_experiment",
        [
            {
                "type": "experiment",
                "experiment": "exp_company",
                "values": {"control": "c", "a": "a", "b": "b"},
            },
            {"type": "force", "condition": {"plan": "free"}, "value": "free"},
        ],
    )
    _flag(
        "f_layer",
        [{"type": "experiment", "experiment": "exp_layer", "values": {"control": "c", "treatment": "t"}}],
    )
    _flag("f_plain", [{"type": "rollout", "condition": {}, "value": "on", "coverage": 0.5}])
    environment = Environment.objects.get(key="production")
    compiled = config.config_get(environment.pk)
    return compiled, features_payload(config.snapshot_build(environment.pk))


def _random_id(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(3, 10)))


def _random_unit(rng: random.Random, *, booleans: bool) -> tuple[str, dict]:
    unit_id = _random_id(rng, "u-")
    attributes: dict = {}
    company = rng.random()
    if company < 0.35:
        attributes["company_id"] = _random_id(rng, "c-")
    elif company < 0.55:
        attributes["company_id"] = rng.choice(
            [rng.randint(1, 10**6), rng.uniform(1, 1000), -rng.randint(1, 99)]
        )
    elif company < 0.7:
        attributes["company_id"] = rng.choice(["", 0, None] + ([True, False, {"x": 1}] if booleans else []))
    if rng.random() < 0.6:
        attributes["device_id"] = rng.choice([_random_id(rng, "d-"), rng.randint(1, 10**9), ""])
    if rng.random() < 0.8:
        attributes["country"] = rng.choice(["US", "DE", "FR", "JP"])
    if rng.random() < 0.8:
        attributes["plan"] = rng.choice(["free", "pro", "team", "internal"])
    return unit_id, attributes


def _ours(compiled, unit_id, attributes) -> dict:
    answers = {}
    for evaluation in evaluate_all(compiled, unit_id, attributes):
        variant = evaluation.variant if evaluation.experiment is not None else None
        answers[evaluation.key] = [evaluation.value, variant]
    return answers


# --- fields and validation through the API ------------------------------------------------------------------
def test_experiment_api__hash_and_fallback_attribute__saved_and_read_back(staff):
    response = staff.post(
        "/api/v1/experiments/",
        {
            "key": "by_company",
            "name": "By company",
            "variants": [{"key": "control"}, {"key": "treatment"}],
            "hash_attribute": "company_id",
            "fallback_attribute": "id",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert (response.json()["hash_attribute"], response.json()["fallback_attribute"]) == ("company_id", "id")
    default = staff.post(
        "/api/v1/experiments/",
        {"key": "by_unit", "name": "By unit", "variants": [{"key": "control"}, {"key": "treatment"}]},
        format="json",
    )
    assert (default.json()["hash_attribute"], default.json()["fallback_attribute"]) == ("id", "")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"hash_attribute": "company.id"}, "hash_attribute"),
        ({"hash_attribute": "$id"}, "hash_attribute"),
        ({"hash_attribute": "x" * 65}, "hash_attribute"),
        ({"fallback_attribute": "device id"}, "fallback_attribute"),
        ({"fallback_attribute": "device_id"}, "fallback_attribute"),  # the unit id is never missing
        ({"hash_attribute": "company_id", "fallback_attribute": "company_id"}, "fallback_attribute"),
    ],
)
def test_experiment_api__bad_hash_attributes__400_naming_the_field(staff, fields, field):
    response = staff.post(
        "/api/v1/experiments/",
        {"key": "bad", "name": "Bad", "variants": [{"key": "control"}, {"key": "treatment"}], **fields},
        format="json",
    )
    assert response.status_code == 400
    assert field in response.json(), response.json()


def test_experiment_api__running__hash_attribute_locked_409(staff):
    experiment = experiment_start(experiment=ExperimentFactory(key="locked"), user=None)
    response = staff.patch(
        f"/api/v1/experiments/{experiment.key}/",
        {"hash_attribute": "company_id", "version": experiment.version},
        format="json",
    )
    assert response.status_code == 409
    assert "hash_attribute" in json.dumps(response.json())
    assert Experiment.objects.get(pk=experiment.pk).hash_attribute == "id"


def test_feature_api__rollout_hash_attributes__round_trip_and_defaults_left_out(staff):
    rules = [
        {
            "type": "rollout",
            "condition": {},
            "value": True,
            "coverage": 0.3,
            "hash_attribute": "company_id",
            "fallback_attribute": "id",
        },
        {"type": "rollout", "condition": {}, "value": True, "coverage": 0.2},
    ]
    response = staff.post(
        "/api/v1/features/",
        {
            "key": "by_company",
            "name": "x",
            "type": "boolean",
            "default_value": False,
            "environments": {"production": {"enabled": True, "rules": rules}},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["environments"]["production"]["rules"] == rules


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ({"type": "force", "value": True, "hash_attribute": "company_id"}, "for rollout rules"),
        ({"type": "rollout", "value": True, "coverage": 0.5, "hash_attribute": "a.b"}, "hash_attribute"),
        ({"type": "rollout", "value": True, "coverage": 0.5, "fallback_attribute": "device_id"}, "never is"),
    ],
)
def test_feature_api__bad_rule_hash_attributes__400_saying_why(staff, rule, words):
    response = staff.post(
        "/api/v1/features/",
        {
            "key": "bad",
            "name": "x",
            "type": "boolean",
            "default_value": False,
            "environments": {"production": {"enabled": True, "rules": [rule]}},
        },
        format="json",
    )
    assert response.status_code == 400
    assert words in json.dumps(response.json()), response.json()


# --- evaluation and exposures -----------------------------------------------------------------------------
def test_evaluate__rollout_by_company__whole_companies_in_or_out(configuration):
    compiled, _ = configuration
    for i in range(300):
        company = f"c-{i % 30}"
        unit = f"user-{i}"
        (evaluation,) = [
            e for e in evaluate_all(compiled, unit, {"company_id": company}) if e.key == "f_company_rollout"
        ]
        assert (evaluation.value == "on") == in_rollout("f_company_rollout", company, 0.43217)
    # No company: the fallback (the unit id) decides.
    for i in range(300):
        (evaluation,) = [e for e in evaluate_all(compiled, f"user-{i}", {}) if e.key == "f_company_rollout"]
        assert (evaluation.value == "on") == in_rollout("f_company_rollout", f"user-{i}", 0.43217)


def test_evaluate__rollout_hash_attribute_missing_without_fallback__not_in(configuration):
    compiled, _ = configuration
    for i in range(200):
        answers = _ours(compiled, f"user-{i}", {"plan": "pro", "device_id": ""})
        assert answers["f_device_rollout"][0] != "pro-on"


def test_sdk_assign__hash_attribute__answer_and_exposure_say_which_id(configuration):
    _, secret = sdk_key_create(environment=Environment.objects.get(key="production"), name="server")
    sdk = APIClient()
    sdk.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    units = [(f"user-{i}", {"company_id": 1000 + i, "country": "US"}) for i in range(40)]
    units += [(f"user-x{i}", {"device_id": f"d-{i}", "country": "US"}) for i in range(40)]
    in_experiment = []
    for unit_id, attributes in units:
        response = sdk.post(
            "/api/v1/assign",
            {"unit_id": unit_id, "attributes": attributes, "experiments": ["exp_company"]},
            format="json",
        )
        (answer,) = response.json()["assignments"]
        if answer["in_experiment"]:
            expected = (
                ("company_id", str(attributes["company_id"]))
                if "company_id" in attributes
                else (
                    "device_id",
                    attributes["device_id"],
                )
            )
            assert (answer["hash_attribute"], answer["hash_value"]) == expected
            in_experiment.append((unit_id, answer["variant"], expected))
        else:
            assert answer["hash_attribute"] is None and answer["reason"] == "NOT_IN_TRAFFIC"
    assert {expected[0] for _, _, expected in in_experiment} == {"company_id", "device_id"}
    rows = {(row["unit_id"], row["variant"]): row["attributes"] for row in exposures.buffer.pending()}
    assert len(rows) == len(in_experiment)
    for unit_id, variant, (attribute, value) in in_experiment:
        kept = rows[(unit_id, variant)]
        assert (kept[exposures.HASH_ATTRIBUTE_KEY], kept[exposures.HASH_VALUE_KEY]) == (attribute, value)


def test_sdk_evaluate__experiment_by_unit_id__exposure_without_hash_keys(configuration):
    _, secret = sdk_key_create(environment=Environment.objects.get(key="production"), name="server")
    sdk = APIClient()
    sdk.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for i in range(60):
        # exp_layer hashes device_id, else id: without a device the unit id decides.
        attributes = {"device_id": f"d-{i}"} if i % 2 else {}
        assert (
            sdk.post(
                "/api/v1/evaluate", {"unit_id": f"user-{i}", "attributes": attributes}, format="json"
            ).status_code
            == 200
        )
    rows = [row for row in exposures.buffer.pending() if row["experiment"] == "exp_layer"]
    assert rows
    for row in rows:
        number = int(row["unit_id"].removeprefix("user-"))
        if number % 2:
            assert row["attributes"][exposures.HASH_ATTRIBUTE_KEY] == "device_id"
            assert row["attributes"][exposures.HASH_VALUE_KEY] == f"d-{number}"
        else:
            assert exposures.HASH_ATTRIBUTE_KEY not in row["attributes"]


# --- the payload and GrowthBook's real SDKs -------------------------------------------------------------
def test_payload__fallback__rule_then_its_copy_for_unidentified_units(configuration):
    _, payload = configuration
    first, copy = payload["f_company_rollout"]["rules"][1:]
    assert (first["hashAttribute"], first["fallbackAttribute"]) == ("company_id", "id")
    assert copy["hashAttribute"] == "id" and "fallbackAttribute" not in copy
    assert copy["condition"] == {
        "$not": {
            "$or": [
                {"company_id": {"$type": "string", "$ne": ""}},
                {"company_id": {"$type": "number", "$ne": 0}},
            ]
        }
    }
    plain = payload["f_device_rollout"]["rules"]
    assert [rule["hashAttribute"] for rule in plain] == ["device_id", "id"]
    experiment_rules = payload["f_company_experiment"]["rules"][:2]
    assert [rule["key"] for rule in experiment_rules] == ["exp_company", "exp_company"]
    assert [rule["hashAttribute"] for rule in experiment_rules] == ["company_id", "device_id"]


def test_growthbook_python_sdk__hash_attributes_with_fallback__same_values_and_variants(configuration):
    compiled, payload = configuration
    rng = random.Random(7)
    mismatches, in_experiment = [], 0
    for _ in range(3000):
        unit_id, attributes = _random_unit(rng, booleans=True)
        ours = _ours(compiled, unit_id, attributes)
        gb = GrowthBook(features=payload, attributes={"id": unit_id, **attributes})
        for flag in FLAGS:
            result = gb.eval_feature(flag)
            experiment = result.experimentResult
            variant = experiment.key if experiment is not None and experiment.inExperiment else None
            if [result.value, variant] != ours[flag]:
                mismatches.append((flag, unit_id, attributes, [result.value, variant], ours[flag]))
            in_experiment += variant is not None
        gb.destroy()
    assert not mismatches, mismatches[:5]
    assert in_experiment > 1000


NODE_EVALUATE = """
import { GrowthBook } from "@growthbook/growthbook";
import { readFileSync } from "node:fs";
const input = JSON.parse(readFileSync(0, "utf8"));
const answers = input.units.map((attributes) => {
  const gb = new GrowthBook({ features: input.features, attributes });
  const row = {};
  for (const flag of input.flags) {
    const result = gb.evalFeature(flag);
    const experiment = result.experimentResult;
    row[flag] = [result.value, experiment && experiment.inExperiment ? experiment.key : null];
  }
  gb.destroy();
  return row;
});
process.stdout.write(JSON.stringify(answers));
"""


def _node(directory, script: str, data) -> object:
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=directory,
        input=json.dumps(data),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def test_growthbook_javascript_sdk__hash_attributes_with_fallback__same_values_and_variants(
    configuration, growthbook_node
):
    # Booleans and objects stay out: JavaScript SDK 1.8.0 hashes any truthy value as text ("true"),
    # where the Python SDK and our server treat them as missing (docs/sdks.md).
    compiled, payload = configuration
    rng = random.Random(8)
    units = [_random_unit(rng, booleans=False) for _ in range(3000)]
    theirs = _node(
        growthbook_node,
        NODE_EVALUATE,
        {"features": payload, "flags": FLAGS, "units": [{"id": u, **a} for u, a in units]},
    )
    mismatches = [
        (flag, unit_id, attributes, answer[flag], ours[flag])
        for (unit_id, attributes), answer in zip(units, theirs, strict=True)
        for ours in [_ours(compiled, unit_id, attributes)]
        for flag in FLAGS
        if answer[flag] != ours[flag]
    ]
    assert not mismatches, mismatches[:5]
    assert sum(answer["f_company_experiment"][1] is not None for answer in theirs) > 500


def test_hash_text__random_numbers__same_text_as_javascript_string(growthbook_node):
    rng = random.Random(9)
    numbers = [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 25) for _ in range(3000)]
    numbers += [rng.randint(1, 10**18) for _ in range(500)] + [0.1, 1e21, 1e-7, 123e-20, 2**53 + 2]
    texts = _node(
        growthbook_node,
        'import { readFileSync } from "node:fs";'
        'process.stdout.write(JSON.stringify(JSON.parse(readFileSync(0, "utf8")).map(String)));',
        numbers,
    )
    assert [hash_text(n) for n in numbers] == texts
