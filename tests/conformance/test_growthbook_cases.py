"""GrowthBook's SDK conformance suite, run through our own bucketing and condition evaluator.

The cases are GrowthBook's (``tests/conformance/growthbook/cases.json``, MIT, source in the README next
to it); every case of the six groups that concern the decision plane must pass, so that our server and
GrowthBook's SDKs put a unit in the same variant and the same targeting.
"""

import json
from pathlib import Path

import pytest

from experiments.bucketing import bucket, bucket_ranges, choose_variation, equal_weights, in_namespace
from experiments.conditions import ConditionError, compile_condition

CASES = json.loads((Path(__file__).parent / "growthbook" / "cases.json").read_text(encoding="utf-8"))


def _ids(group: str, name_at: int | None = 0) -> list[str]:
    return [f"{i}-{case[name_at]}" if name_at is not None else str(i) for i, case in enumerate(CASES[group])]


def test_cases__vendored_groups__have_the_published_counts() -> None:
    counts = {group: len(CASES[group]) for group in CASES if group != "specVersion"}
    assert counts == {
        "hash": 15,
        "getBucketRange": 13,
        "chooseVariation": 13,
        "getEqualWeights": 6,
        "inNamespace": 16,
        "evalCondition": 248,
    }


@pytest.mark.parametrize(("seed", "value", "version", "expected"), CASES["hash"], ids=_ids("hash", None))
def test_hash__growthbook_case__same_bucket(
    seed: str, value: str, version: int, expected: float | None
) -> None:
    assert bucket(seed, value, version) == expected


@pytest.mark.parametrize(("name", "args", "expected"), CASES["getBucketRange"], ids=_ids("getBucketRange"))
def test_get_bucket_range__growthbook_case__same_ranges(name: str, args: list, expected: list) -> None:
    num_variations, coverage, weights = args
    ranges = bucket_ranges(num_variations, coverage, weights)
    # GrowthBook's own tests round to 6 decimal places; doubles summed the same way are equal anyway.
    assert [[round(a, 6), round(b, 6)] for a, b in ranges] == [
        [round(a, 6), round(b, 6)] for a, b in expected
    ]


@pytest.mark.parametrize(
    ("name", "n", "ranges", "expected"), CASES["chooseVariation"], ids=_ids("chooseVariation")
)
def test_choose_variation__growthbook_case__same_index(
    name: str, n: float, ranges: list, expected: int
) -> None:
    assert choose_variation(n, ranges) == expected


@pytest.mark.parametrize(
    ("num_variations", "expected"), CASES["getEqualWeights"], ids=_ids("getEqualWeights", None)
)
def test_get_equal_weights__growthbook_case__same_weights(num_variations: int, expected: list[float]) -> None:
    assert [round(w, 8) for w in equal_weights(num_variations)] == expected


@pytest.mark.parametrize(
    ("name", "unit_id", "namespace", "expected"), CASES["inNamespace"], ids=_ids("inNamespace")
)
def test_in_namespace__growthbook_case__same_answer(
    name: str, unit_id: str, namespace: list, expected: bool
) -> None:
    assert in_namespace(unit_id, namespace) is expected


@pytest.mark.parametrize("case", CASES["evalCondition"], ids=_ids("evalCondition"))
def test_eval_condition__growthbook_case__same_answer(case: list) -> None:
    name, condition, attributes, expected, *rest = case
    saved_groups = rest[0] if rest else {}
    # As a stored configuration is evaluated: the specification's answer, never an exception
    assert compile_condition(condition, strict=False, saved_groups=saved_groups)(attributes) is expected
    # And as it is saved: either the same answer, or refused with a reason (never a different answer)
    try:
        predicate = compile_condition(condition, saved_groups=saved_groups)
    except ConditionError:
        return
    assert predicate(attributes) is expected
