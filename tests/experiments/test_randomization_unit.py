"""The randomization unit: which attribute an experiment or a rollout hashes, and its fallback.

Pure functions (``experiments.bucketing.hash_text``, ``unit_hash``) and ``experiments.assignment``;
the text hashed for a number is checked against hand-written JavaScript ``String(number)`` values
here and against node itself in ``tests/features/test_randomization_unit.py``.
"""

import math
import random

import pytest
from growthbook.core import _js_number_to_string

from experiments.assignment import AssignmentReason, assign, experiment_compile
from experiments.bucketing import assign_variant, bucket, hash_text, unit_hash


# --- the text hashed --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("acme", "acme"),
        ("ünï 😀", "ünï 😀"),
        (42, "42"),
        (-7, "-7"),
        (1.5, "1.5"),
        (1.0, "1"),  # JavaScript has one number type: 1.0 is written 1
        (0.1 + 0.2, "0.30000000000000004"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789.125, "123456789.125"),
        (0.000001, "0.000001"),
        (1.5e-7, "1.5e-7"),
        (2**53, "9007199254740992"),
        (2**60, "1152921504606847000"),  # the nearest double, written as JavaScript writes it
        (-2.5e-10, "-2.5e-10"),
    ],
)
def test_hash_text__string_or_number__as_javascript_writes_it(value, text):
    assert hash_text(value) == text


@pytest.mark.parametrize(
    "value", [None, "", 0, 0.0, -0.0, True, False, {}, {"a": 1}, [], ["a"], math.inf, 10**400]
)
def test_hash_text__not_a_non_empty_string_or_non_zero_number__identifies_nobody(value):
    assert hash_text(value) == ""


def test_hash_text__random_doubles__same_text_as_growthbook_python_sdk():
    # The Python SDK's own port of Number::toString is an independent implementation of the same rule.
    rng = random.Random(12)
    numbers = [rng.uniform(-1, 1) * 10 ** rng.randint(-12, 25) for _ in range(5000)]
    numbers += [rng.randint(1, 10**18) for _ in range(1000)]
    assert [hash_text(n) for n in numbers] == [_js_number_to_string(n) for n in numbers]


@pytest.mark.parametrize(
    ("attributes", "hash_attribute", "fallback", "expected"),
    [
        ({"company_id": "acme"}, "id", None, ("id", "unit-1")),
        ({"company_id": "acme"}, "company_id", "id", ("company_id", "acme")),
        ({"company_id": 42}, "company_id", None, ("company_id", "42")),
        ({}, "company_id", "id", ("id", "unit-1")),
        ({"company_id": ""}, "company_id", "device_id", None),
        ({"company_id": 0, "device_id": "d-9"}, "company_id", "device_id", ("device_id", "d-9")),
        ({"company_id": None}, "company_id", None, None),
        ({"id": "other"}, "id", None, ("id", "unit-1")),  # id is always the unit id
    ],
)
def test_unit_hash__hash_then_fallback_attribute(attributes, hash_attribute, fallback, expected):
    assert unit_hash("unit-1", attributes, hash_attribute, fallback) == expected


# --- assignment -------------------------------------------------------------------------------------------
def _experiment(**fields):
    return experiment_compile(
        {
            "key": "pricing",
            "status": "running",
            "seed": "pricing",
            "variants": [{"key": "control"}, {"key": "cheaper"}],
            "traffic_allocation": 0.8,
            **fields,
        }
    )


def test_assign__hash_attribute__variant_of_the_attribute_value_for_every_unit_with_it():
    experiment = _experiment(hash_attribute="company_id")
    seen = {}
    for i in range(400):
        company = f"company-{i % 40}"
        assignment = assign(experiment, f"user-{i}", {"company_id": company})
        expected = assign_variant(seed="pricing", unit_id=company, weights=(1.0, 1.0), traffic_allocation=0.8)
        assert assignment.variant == (None if expected is None else ("control", "cheaper")[expected])
        if assignment.in_experiment:
            assert (assignment.hash_attribute, assignment.hash_value) == ("company_id", company)
        seen.setdefault(company, set()).add(assignment.variant)
    # Everyone in a company shares its variant, and the companies are split.
    assert all(len(variants) == 1 for variants in seen.values())
    assert {"control", "cheaper", None} == set().union(*seen.values())


def test_assign__hash_attribute_missing_without_fallback__not_in_experiment():
    experiment = _experiment(hash_attribute="company_id", traffic_allocation=1.0)
    for attributes in ({}, {"company_id": ""}, {"company_id": False}, {"company_id": {"id": 1}}):
        assignment = assign(experiment, "user-1", attributes)
        assert assignment.reason == AssignmentReason.HASH_ATTRIBUTE_MISSING
        assert not assignment.in_experiment and assignment.variant is None


def test_assign__hash_attribute_missing_with_fallback_id__unit_id_decides():
    experiment = _experiment(hash_attribute="company_id", fallback_attribute="id", traffic_allocation=1.0)
    for i in range(200):
        assignment = assign(experiment, f"user-{i}", {"plan": "pro"})
        expected = 0 if bucket("pricing", f"user-{i}") < 0.5 else 1
        assert assignment.variant == ("control", "cheaper")[expected]
        assert (assignment.hash_attribute, assignment.hash_value) == ("id", f"user-{i}")


def test_assign__layered_experiment__namespace_hashes_the_attribute_too():
    experiment = _experiment(
        hash_attribute="device_id", layer="home", layer_slice_start=0.0, traffic_allocation=0.5
    )
    for i in range(300):
        device = f"device-{i}"
        assignment = assign(experiment, f"user-{i}", {"device_id": device})
        in_slice = bucket("__home", device, 1) < 0.5
        assert assignment.in_experiment == in_slice
