"""A flag whose rules serve nobody, behind a held-out prerequisite: its default, and none of the
prerequisite's exposures, as GrowthBook's SDK, whose payload writes prerequisites on rules only,
never evaluates the prerequisite for it (docs/sdks.md, "Evaluation order")."""

import random

import pytest
from django.urls import reverse
from growthbook import GrowthBook

from experiments.bucketing import bucket
from features.evaluation import Reason, config_compile, evaluate_feature
from features.growthbook import features_payload
from features.holdouts.services import holdout_start
from features.models import Environment
from features.sdk import exposures
from features.services import feature_create, sdk_key_create
from tests.features.growthbook_flags import random_unit, same_value
from tests.features.test_holdouts import HOLDOUT_EXPERIMENT, ON, experiment, flag, snapshot

HELD_COVERAGE = 0.7
HELD = flag(
    rules=[{"type": "rollout", "condition": {}, "coverage": HELD_COVERAGE, "value": True}], holdout="q1"
)
EXPERIMENT_RULE = {"type": "experiment", "experiment": "exp", "values": {"control": 1, "treatment": 2}}


def features() -> dict:
    return {
        "held": HELD,
        "exp_flag": flag(default=0, rules=[EXPERIMENT_RULE]),
        # Rule-less, behind the held-out flag
        "behind": flag(prerequisites=[("held", True)]),
        # Only an experiment rule whose experiment is stopped: the payload leaves it out too
        "behind_stopped": flag(
            default=0,
            rules=[{**EXPERIMENT_RULE, "experiment": "stopped"}],
            prerequisites=[("held", True)],
        ),
        # Rule-less, behind a flag an experiment serves, and held out itself
        "held_behind_exp": flag(default=5, prerequisites=[("exp_flag", 2)], holdout="q1"),
        # With a rule: the prerequisite is evaluated, and its exposures are the flag's
        "behind_with_rule": flag(rules=[ON], prerequisites=[("held", True)]),
    }


def config_and_payload():
    experiments = {"exp": experiment("exp"), "stopped": experiment("stopped", status="stopped")}
    raw = snapshot(features(), experiments)
    return config_compile(raw), features_payload(raw)


def test_evaluate__rule_less_flag_behind_held_out_prerequisite__default_static_no_exposures():
    config, _ = config_and_payload()
    units = [f"user-{i}" for i in range(2000)]

    behind = [evaluate_feature(config, "behind", unit, {}) for unit in units]
    with_rule = [evaluate_feature(config, "behind_with_rule", unit, {}) for unit in units]

    assert all(e.value is False and e.reason == Reason.STATIC and e.exposures == () for e in behind)
    # The same prerequisite behind a rule logs the holdout's exposures: the check above can fail
    assert sum(any(x[0] == HOLDOUT_EXPERIMENT for x in e.exposures) for e in with_rule) > 200


def test_evaluate__only_a_stopped_experiment_rule__default_without_the_prerequisites_exposures():
    config, _ = config_and_payload()

    results = [evaluate_feature(config, "behind_stopped", f"user-{i}", {}) for i in range(2000)]

    assert all(e.value == 0 and e.reason == Reason.DEFAULT and e.exposures == () for e in results)


def test_growthbook_python_sdk__flags_serving_nobody_behind_prerequisites__same_values_and_exposures():
    config, payload = config_and_payload()
    assert "rules" not in payload["behind"] and "rules" not in payload["behind_stopped"]
    rng = random.Random(11)
    mismatches, exposed = [], 0
    for unit_id, attributes in (random_unit(rng) for _ in range(2000)):
        if bucket("held", unit_id, 2) == HELD_COVERAGE:
            continue  # the Python SDK's `< coverage`, not `<=` (test_growthbook_sdk.py's "edge")
        for key in features():
            # One SDK instance per flag: an instance tracks each (experiment, variant) once only.
            tracked = []
            gb = GrowthBook(
                attributes={"id": unit_id, **attributes},
                features=payload,
                on_experiment_viewed=lambda experiment, result, tracked=tracked, **_: tracked.append(
                    (experiment.key, result.key)
                ),
            )
            ours = evaluate_feature(config, key, unit_id, attributes)
            result = gb.eval_feature(key)
            exposed += bool(tracked)
            if not same_value(result.value, ours.value):
                mismatches.append((key, unit_id, attributes, result.value, ours))
            elif set(tracked) != {(e, v) for e, v, _ in ours.exposures}:
                mismatches.append((key, unit_id, attributes, "exposures", tracked, ours.exposures))
            gb.destroy()
    assert not mismatches, mismatches[:5]
    assert exposed > 1000  # the SDK did track exposures for the other flags


@pytest.mark.django_db
def test_ofrep__rule_less_flag_behind_held_out_flag__no_holdout_exposures(fresh_decision_plane, api_client):
    # Given a held-out flag, a rule-less flag behind it, and one with a rule behind it
    from features.holdouts.services import holdout_create
    from features.models import Feature
    from tests.factories import MetricFactory

    production = {"enabled": True, "rules": [{"type": "force", "condition": {}, "value": True}]}
    feature_create(
        user=None, key="held", name="Held", type="boolean", environments={"production": production}
    )
    feature_create(
        user=None,
        key="behind",
        name="Behind",
        type="boolean",
        environments={"production": {"enabled": True, "rules": []}},
        prerequisites=[{"feature": "held", "value": True}],
    )
    feature_create(
        user=None,
        key="behind_with_rule",
        name="Behind, with a rule",
        type="boolean",
        environments={"production": production},
        prerequisites=[{"feature": "held", "value": True}],
    )
    holdout = holdout_create(
        user=None,
        key="q1",
        name="Q1",
        percentage=10,
        hash_seed="q1-seed",
        features=[Feature.objects.get(key="held")],
        metrics=[MetricFactory(key="purchases")],
    )
    holdout_start(holdout=holdout, user=None)
    _, raw = sdk_key_create(environment=Environment.objects.get(key="production"))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    units = [f"user-{i}" for i in range(300)]

    def holdout_rows(flag_key: str) -> tuple[int, set]:
        exposures.buffer.clear()
        values = set()
        for unit in units:
            body = {"context": {"targetingKey": unit}}
            response = api_client.post(f"/ofrep/v1/evaluate/flags/{flag_key}", body, format="json")
            assert response.status_code == 200, response.json()
            values.add(response.json()["value"])
        return sum(row["experiment"] == "holdout-q1" for row in exposures.buffer.pending()), values

    # When a rule-less flag behind it is evaluated (OFREP, one flag at a time): its default, no exposures
    assert holdout_rows("behind") == (0, {False})
    # Then the flag with a rule logs the holdout's exposures, held-out units failing its prerequisite
    rows, values = holdout_rows("behind_with_rule")
    assert rows > 30 and values == {True, False}
    for unit in units[:50]:
        flags = api_client.post(reverse("sdk-evaluate"), {"unit_id": unit}, format="json").json()["flags"]
        assert flags["behind"] == {"value": False, "variant": "default", "reason": "STATIC"}
