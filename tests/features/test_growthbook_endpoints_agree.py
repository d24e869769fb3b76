"""OFREP and ``/api/v1/assign`` answer for a unit what GrowthBook's SDK, evaluating our payload, decides.

``/api/v1/evaluate`` is checked against both real SDKs in ``test_growthbook_sdk`` (live server). Here,
in-process (DRF's test client, no live server), the payload of ``GET /api/features/{client_key}`` is
evaluated by PyPI ``growthbook`` 4.x's Python SDK for random units (``GROWTHBOOK_ENDPOINTS_UNITS``,
default 1,000), and for each unit:

- ``POST /ofrep/v1/evaluate/flags/{key}`` gives, for every flag, the SDK's value and, when an experiment
  served it, the SDK's variant (OFREP's ``variant`` is the experiment's variant key, from the rule's
  ``meta``; a rollout or force rule answers ``rule-N``) and experiment (``metadata.experiment``);
- ``POST /api/v1/assign`` (every experiment, ``log_exposure: false``) puts the unit in exactly the
  experiments the SDK put it in, with the same variant. The SDK runs an experiment only when its flag
  reaches the rule: ``exp_weights`` sits behind the flag rule's own condition (``age < 60``, which
  assign does not know), so it is compared only for those units; the other experiments are their
  flag's first rules (``exp_layer_2`` follows ``exp_layer_1`` in the same layer: disjoint slices;
  ``exp_held`` is held out by a holdout: the SDK skips its rule for held-out units, assign answers
  ``HOLDOUT``).

The Python SDK's ``<`` on a rollout's coverage (see ``test_growthbook_sdk``) is counted apart.
"""

import os
import random

import pytest
from growthbook import GrowthBook
from rest_framework.test import APIClient

from features.models import Environment
from features.services import sdk_key_create
from tests.features.growthbook_flags import (
    experiment_variant,
    on_rollout_edge,
    payload_flags,
    random_unit,
    same_value,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

UNITS = int(os.environ.get("GROWTHBOOK_ENDPOINTS_UNITS", "1000"))
EXPERIMENTS = ["exp_company", "exp_held", "exp_layer_1", "exp_layer_2", "exp_paused", "exp_weights"]
# An experiment whose flag rule has a condition of its own: compared only where the condition holds.
REACHED = {"exp_weights": lambda attributes: attributes["age"] < 60}


def test_ofrep_and_assign__random_units__same_values_variants_and_assignments_as_the_sdk(
    fresh_decision_plane, growthbook_flags
):
    flags = growthbook_flags
    production = Environment.objects.get(key="production")
    _, client_key = sdk_key_create(environment=production, name="sdk", kind="client")
    _, secret_key = sdk_key_create(environment=production, name="server")
    payload = APIClient().get(f"/api/features/{client_key}").json()
    assert payload_flags(payload["features"]) == set(flags)
    server = APIClient()
    server.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    rng = random.Random(20261207)

    ofrep_mismatches, assign_mismatches, edge = [], [], []
    in_experiment = dict.fromkeys(EXPERIMENTS, 0)
    for _ in range(UNITS):
        unit_id, attributes = random_unit(rng)
        gb = GrowthBook(features=payload["features"], attributes={"id": unit_id, **attributes})
        sdk_assigned = {}  # experiment -> variant key, for the experiments the SDK put the unit in
        for flag in flags:
            result = gb.eval_feature(flag)
            experiment = result.experimentResult
            sdk_variant = experiment.key if experiment is not None and experiment.inExperiment else None
            if sdk_variant is not None:
                sdk_assigned[result.experiment.key] = sdk_variant
            response = server.post(
                f"/ofrep/v1/evaluate/flags/{flag}",
                {"context": {"targetingKey": unit_id, **attributes}},
                format="json",
            )
            assert response.status_code == 200, response.content
            ofrep = response.json()
            if not same_value(result.value, ofrep["value"]):
                difference = (flag, unit_id, attributes, "value", result.value, ofrep)
            elif sdk_variant != experiment_variant(ofrep):
                difference = (flag, unit_id, attributes, "variant", sdk_variant, ofrep)
            elif sdk_variant is not None and ofrep["metadata"].get("experiment") != result.experiment.key:
                difference = (flag, unit_id, attributes, "experiment", result.experiment.key, ofrep)
            else:
                continue
            (edge if on_rollout_edge(flag, unit_id) else ofrep_mismatches).append(difference)
        gb.destroy()

        response = server.post(
            "/api/v1/assign",
            {
                "unit_id": unit_id,
                "attributes": attributes,
                "experiments": EXPERIMENTS,
                "log_exposure": False,
            },
            format="json",
        )
        assert response.status_code == 200, response.content
        assignments = response.json()["assignments"]
        assert [a["experiment"] for a in assignments] == EXPERIMENTS
        for assignment in assignments:
            key = assignment["experiment"]
            if key in REACHED and not REACHED[key](attributes):
                continue
            ours = assignment["variant"] if assignment["in_experiment"] else None
            in_experiment[key] += ours is not None
            if ours != sdk_assigned.get(key) or (ours is None) == assignment["in_experiment"]:
                assign_mismatches.append((key, unit_id, attributes, sdk_assigned.get(key), assignment))

    print(
        f"GrowthBook Python SDK vs OFREP and /api/v1/assign, {UNITS} units x {len(flags)} flags: OFREP "
        f"{len(ofrep_mismatches)} differ ({len(edge)} more on a rollout edge, hash == coverage: the "
        f"Python SDK's `<`); assign {len(assign_mismatches)} differ; units in each experiment: "
        f"{in_experiment}"
    )
    assert not ofrep_mismatches, f"OFREP: {len(ofrep_mismatches)} differ; first: {ofrep_mismatches[:5]}"
    assert not assign_mismatches, f"assign: {len(assign_mismatches)} differ; first: {assign_mismatches[:5]}"
    # The experiments really assigned units (and the paused one nobody).
    assert in_experiment["exp_weights"] > UNITS * 0.1
    assert in_experiment["exp_layer_1"] > UNITS * 0.2
    assert in_experiment["exp_layer_2"] > UNITS * 0.2
    assert in_experiment["exp_company"] > UNITS * 0.5
    assert in_experiment["exp_paused"] == 0
    assert UNITS * 0.7 < in_experiment["exp_held"] < UNITS * 0.9 * 0.95  # 90% traffic, 10% held out
