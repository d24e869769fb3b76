"""The flags the GrowthBook SDK agreement tests evaluate, and random units to evaluate them for.

Force, rollout, experiment (weights, coverage, targeting), layers (namespaces), randomization by
another attribute than the unit id with a fallback (an experiment by ``company_id``, a rollout by
``device_id``), a paused experiment,
prerequisites (one on an experiment-served flag), a flag whose environment is off, and holdouts (a
10% holdout by unit id of a rollout flag, of an experiment and of a flag behind a held-out prerequisite;
a 25% holdout by ``company_id``): every kind of rule the payload writes. Shared by ``test_growthbook_sdk`` (local evaluation) and
``test_growthbook_remote_eval``.
"""

import json
import random
import string
import subprocess
from pathlib import Path

from experiments.bucketing import bucket
from experiments.models import Experiment, Variant
from experiments.services import experiment_pause, experiment_start
from features.holdouts.services import holdout_create, holdout_start
from features.models import Feature
from features.services import feature_create
from tests.factories import ExperimentFactory

# The rollout rules of each flag (seed: the flag key), and the flags whose prerequisite has them.
ROLLOUT_COVERAGES = {"f_rollout": (0.8, 0.3), "f_layer": (0.5,)}
PREREQUISITE_OF = {"f_prerequisite": "f_rollout"}


def _experiment(key: str, *, variants, weights=None, **fields) -> Experiment:
    experiment = ExperimentFactory(key=key, variants=variants, **fields)
    variants_in_order = Variant.objects.filter(experiment=experiment).order_by("position")
    for variant, weight in zip(
        variants_in_order, weights or [v.weight for v in variants_in_order], strict=True
    ):
        variant.weight = weight
        variant.save()
    return experiment_start(experiment=experiment, user=None)


def _flag(key: str, type_: str, default, rules=(), *, prerequisites=(), environment="production"):
    feature_create(
        user=None,
        key=key,
        name=key,
        type=type_,
        default_value=default,
        prerequisites=prerequisites,
        environments={environment: {"enabled": True, "rules": list(rules)}},
    )


def flags_create(*, randomization_unit: bool = True) -> list[str]:
    """The flags and experiments the agreement tests evaluate; their keys.

    ``randomization_unit``: also the experiment by ``company_id`` and the rollout by ``device_id``
    (``f_by_company``, ``f_by_device``). Their tracking calls name the company id as the hashed value,
    and an SDK instance calls the callback once per hashed value, experiment and variation, not per
    unit (docs/sdks.md, "Exposures from GrowthBook's SDKs"): the tests that reuse one instance for
    many units account for it.
    """
    _experiment(
        "exp_weights",
        variants=["control", "a", "b"],
        weights=[1, 2, 1],
        traffic_allocation=0.7,
        targeting={"country": {"$in": ["US", "DE"]}},
    )
    _experiment("exp_layer_1", variants=["control", "treatment"], layer="home", traffic_allocation=0.4)
    _experiment("exp_layer_2", variants=["control", "treatment"], layer="home", traffic_allocation=0.35)
    # Randomized by company (falling back to the unit id): everyone in a company sees one variant.
    if randomization_unit:
        _randomization_unit_create()
    return _flags_create(randomization_unit) + _holdouts_create(randomization_unit)


HOLDOUT_PREFIX = "$holdout:"  # the payload's holdout features (features.growthbook), not flags


def payload_flags(keys) -> set[str]:
    """The flags among a payload's feature keys (its ``$holdout:<key>`` features left out)."""
    return {key for key in keys if not key.startswith(HOLDOUT_PREFIX)}


def _holdouts_create(randomization_unit: bool) -> list[str]:
    held_experiment = _experiment("exp_held", variants=["control", "treatment"], traffic_allocation=0.9)
    # Off the 1/10,000 hash grid: the Python SDK's `<` cannot differ here.
    _flag(
        "f_held", "string", "off", [{"type": "rollout", "condition": {}, "coverage": 0.61803, "value": "on"}]
    )
    _flag(
        "f_held_experiment",
        "string",
        "off",
        [
            {"type": "experiment", "experiment": "exp_held", "values": {"control": "c", "treatment": "t"}},
            {"type": "force", "condition": {"plan": "pro"}, "value": "pro"},
        ],
    )
    _flag(
        "f_behind_held",
        "boolean",
        False,
        [{"type": "force", "condition": {}, "value": True}],
        prerequisites=[{"feature": "f_held", "value": "on"}],
    )
    holdout = holdout_create(
        user=None,
        key="hq",
        name="Quarter",
        percentage=10,
        hash_seed="hq-seed",
        features=[Feature.objects.get(key="f_held")],
        experiments=[held_experiment],
    )
    holdout_start(holdout=holdout, user=None)
    flags = ["f_held", "f_held_experiment", "f_behind_held"]
    if randomization_unit:
        _flag("f_held_company", "number", 0, [{"type": "force", "condition": {}, "value": 1}])
        by_company = holdout_create(
            user=None,
            key="hc",
            name="Companies",
            percentage=25,
            hash_attribute="company_id",
            features=[Feature.objects.get(key="f_held_company")],
        )
        holdout_start(holdout=by_company, user=None)
        flags.append("f_held_company")
    return flags


def _randomization_unit_create() -> None:
    _experiment(
        "exp_company",
        variants=["control", "treatment"],
        traffic_allocation=0.9,
        hash_attribute="company_id",
        fallback_attribute="id",
    )
    _flag(
        "f_by_company",
        "string",
        "off",
        [{"type": "experiment", "experiment": "exp_company", "values": {"control": "c", "treatment": "t"}}],
    )
    _flag(
        "f_by_device",
        "boolean",
        False,
        [
            # Off the 1/10,000 hash grid: the Python SDK's `<` cannot differ here.
            {
                "type": "rollout",
                "condition": {},
                "coverage": 0.41421,
                "value": True,
                "hash_attribute": "device_id",
                "fallback_attribute": "company_id",
            },
        ],
    )


def _flags_create(randomization_unit: bool) -> list[str]:
    paused = _experiment("exp_paused", variants=["control", "treatment"])
    experiment_pause(experiment=paused, user=None)

    _flag(
        "f_force",
        "string",
        "default",
        [
            {"type": "force", "condition": {"country": "US"}, "value": "us"},
            {"type": "force", "condition": {"plan": {"$in": ["pro", "team"]}}, "value": "paid"},
        ],
    )
    _flag(
        "f_rollout",
        "boolean",
        False,
        [
            {"type": "rollout", "condition": {"age": {"$gte": 50}}, "coverage": 0.8, "value": True},
            {"type": "rollout", "condition": {}, "coverage": 0.3, "value": True},
        ],
    )
    _flag(
        "f_experiment",
        "string",
        "off",
        [
            {
                "type": "experiment",
                "condition": {"age": {"$lt": 60}},
                "experiment": "exp_weights",
                "values": {"control": "c", "a": "a", "b": "b"},
            },
            {"type": "force", "condition": {"plan": "free"}, "value": "free-fallback"},
        ],
    )
    _flag(
        "f_layer",
        "number",
        0,
        [
            {"type": "experiment", "experiment": "exp_layer_1", "values": {"control": 1, "treatment": 2}},
            {"type": "experiment", "experiment": "exp_layer_2", "values": {"control": 3, "treatment": 4}},
            {"type": "rollout", "condition": {}, "coverage": 0.5, "value": 5},
        ],
    )
    _flag(
        "f_paused",
        "boolean",
        False,
        [
            {
                "type": "experiment",
                "experiment": "exp_paused",
                "values": {"control": False, "treatment": True},
            },
            {"type": "force", "condition": {"plan": "team"}, "value": True},
        ],
    )
    _flag(
        "f_prerequisite",
        "number",
        0.5,
        [
            {"type": "force", "condition": {"plan": "pro"}, "value": 10},
            {"type": "force", "condition": {}, "value": 1},
        ],
        prerequisites=[{"feature": "f_rollout", "value": True}],
    )
    _flag(
        "f_prerequisite_experiment",
        "string",
        "no",
        [{"type": "force", "condition": {}, "value": "yes"}],
        prerequisites=[{"feature": "f_experiment", "value": "b"}],
    )
    _flag(
        "f_disabled",
        "boolean",
        False,
        [{"type": "force", "condition": {}, "value": True}],
        environment="staging",  # off in production: the default only
    )
    return [
        "f_force",
        "f_rollout",
        "f_experiment",
        "f_layer",
        *(["f_by_company", "f_by_device"] if randomization_unit else []),
        "f_paused",
        "f_prerequisite",
        "f_prerequisite_experiment",
        "f_disabled",
    ]


def random_unit(rng: random.Random) -> tuple[str, dict]:
    unit_id = "u-" + "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(4, 16)))
    attributes: dict = {"age": rng.randint(14, 80)}
    if rng.random() < 0.8:
        attributes["country"] = rng.choice(["US", "DE", "FR", "JP"])
    if rng.random() < 0.8:
        attributes["plan"] = rng.choice(["free", "pro", "team"])
    # The randomization unit's attributes (f_by_company, f_by_device): a string, a number, empty, or
    # missing. (Never a boolean: the JavaScript SDK hashes those as text, docs/sdks.md.)
    if rng.random() < 0.6:
        attributes["company_id"] = rng.choice([f"c-{rng.randint(1, 200)}", rng.randint(1, 200), ""])
    if rng.random() < 0.5:
        attributes["device_id"] = rng.choice([f"d-{rng.randint(1, 10**6)}", 0])
    return unit_id, attributes


def on_rollout_edge(flag: str, unit_id: str) -> bool:
    """The unit's hash equals a rollout's coverage: where the Python SDK's ``<`` differs from ``<=``."""
    flag = PREREQUISITE_OF.get(flag, flag)
    return any(bucket(flag, unit_id, 2) == coverage for coverage in ROLLOUT_COVERAGES.get(flag, ()))


def experiment_variant(evaluation: dict) -> str | None:
    """The variant key when an experiment served the value: reason SPLIT and not a rollout's rule-N."""
    variant = evaluation["variant"]
    return variant if evaluation["reason"] == "SPLIT" and not variant.startswith("rule-") else None


def evaluate_ours(client, units: list[tuple[str, dict]]) -> list[dict]:
    """``/api/v1/evaluate`` for each unit: its ``flags``, in order.

    In-process (the same view, middleware and configuration as over HTTP, through DRF's test client
    authenticated with a secret key): the live server's keep-alive answers wait ~40 ms each on
    delayed ACKs, which would make 10,000 units slow.
    """
    answers = []
    for unit_id, attributes in units:
        response = client.post(
            "/api/v1/evaluate", {"unit_id": unit_id, "attributes": attributes}, format="json"
        )
        assert response.status_code == 200, response.content
        answers.append(response.json()["flags"])
    return answers


def same_value(sdk_value, our_value) -> bool:
    """Equal as JSON values: ``True`` is not ``1``, ``1`` equals ``1.0`` (JavaScript has one number)."""
    if isinstance(sdk_value, bool) or isinstance(our_value, bool):
        return sdk_value is our_value
    return sdk_value == our_value and (sdk_value is None) == (our_value is None)


def run_node_sdk(node_dir: Path, request: dict, tmp_path: Path) -> dict:
    """GrowthBook's JavaScript SDK under node (``node/evaluate.mjs``) on ``request``; its answer."""
    request_file = tmp_path / "node-request.json"
    request_file.write_text(json.dumps(request), encoding="utf-8")
    done = subprocess.run(
        ["node", str(node_dir / "evaluate.mjs"), str(request_file)],
        cwd=node_dir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)
