"""The condition evaluator shared by experiment targeting and feature rules."""

import math
import re
import timeit

import pytest

from experiments import conditions
from experiments.conditions import (
    MAX_DEPTH,
    MAX_REGEX_LENGTH,
    MAX_REGEX_SUBJECT_LENGTH,
    OPERATORS,
    ConditionError,
    compile_condition,
    evaluate_condition,
    validate_condition,
)

USER = {
    "id": "user-1",
    "country": "US",
    "plan": "pro",
    "age": 34,
    "score": 7.5,
    "beta": True,
    "email": "ada@example.com",
    "signup": "2024-03-15",
    "tags": ["early-adopter", "mobile"],
    "nothing": None,
    "user": {"country": "CA", "device": {"os": "ios"}},
    "address": {"city": "Paris", "zip": "75001"},
}

# (condition, attributes, expected)
CASES = [
    # everyone
    pytest.param({}, USER, True, id="empty-matches-everyone"),
    pytest.param({}, {}, True, id="empty-matches-no-attributes"),
    # implicit equality
    pytest.param({"plan": "pro"}, USER, True, id="implicit-eq-string"),
    pytest.param({"plan": "free"}, USER, False, id="implicit-eq-string-other"),
    pytest.param({"age": 34}, USER, True, id="implicit-eq-number"),
    pytest.param({"age": 34.0}, USER, True, id="implicit-eq-int-equals-float"),
    pytest.param({"beta": True}, USER, True, id="implicit-eq-bool"),
    pytest.param({"plan": "pro", "country": "US"}, USER, True, id="implicit-eq-all-clauses-hold"),
    pytest.param({"plan": "pro", "country": "FR"}, USER, False, id="implicit-eq-one-clause-fails"),
    pytest.param({"tags": ["early-adopter", "mobile"]}, USER, True, id="implicit-eq-same-array"),
    pytest.param({"tags": ["mobile", "early-adopter"]}, USER, False, id="implicit-eq-array-order-matters"),
    pytest.param({"tags": "mobile"}, USER, False, id="implicit-eq-array-attribute-is-not-contains"),
    pytest.param({"address": {"city": "Paris", "zip": "75001"}}, USER, True, id="implicit-eq-whole-object"),
    pytest.param({"address": {"city": "Paris"}}, USER, False, id="implicit-eq-object-needs-all-keys"),
    pytest.param({"nothing": None}, USER, True, id="implicit-eq-null"),
    pytest.param({"missing": None}, USER, True, id="implicit-eq-null-matches-missing"),
    # $eq / $ne
    pytest.param({"country": {"$eq": "US"}}, USER, True, id="eq"),
    pytest.param({"country": {"$eq": "us"}}, USER, False, id="eq-case-sensitive"),
    pytest.param({"country": {"$ne": "FR"}}, USER, True, id="ne"),
    pytest.param({"country": {"$ne": "US"}}, USER, False, id="ne-equal"),
    pytest.param({"age": {"$eq": 34.0}}, USER, True, id="eq-int-float"),
    # $in / $nin
    pytest.param({"country": {"$in": ["US", "CA"]}}, USER, True, id="in"),
    pytest.param({"country": {"$in": ["FR", "DE"]}}, USER, False, id="in-not-listed"),
    pytest.param({"country": {"$in": []}}, USER, False, id="in-empty-list-matches-nobody"),
    pytest.param({"age": {"$in": [33, 34, 35]}}, USER, True, id="in-numbers"),
    pytest.param({"age": {"$in": [34.0]}}, USER, True, id="in-int-float"),
    pytest.param({"country": {"$nin": ["FR", "DE"]}}, USER, True, id="nin"),
    pytest.param({"country": {"$nin": ["US"]}}, USER, False, id="nin-listed"),
    pytest.param({"country": {"$nin": []}}, USER, True, id="nin-empty-list-matches-everybody"),
    # $in / $nin against array attributes: intersection, as GrowthBook
    pytest.param({"tags": {"$in": ["mobile", "desktop"]}}, USER, True, id="in-array-shares-an-element"),
    pytest.param({"tags": {"$in": ["desktop"]}}, USER, False, id="in-array-shares-none"),
    pytest.param({"tags": {"$in": ["mobile"]}}, {"tags": []}, False, id="in-empty-array"),
    pytest.param({"tags": {"$nin": ["desktop"]}}, USER, True, id="nin-array-shares-none"),
    pytest.param({"tags": {"$nin": ["mobile", "desktop"]}}, USER, False, id="nin-array-shares-an-element"),
    pytest.param({"tags": {"$nin": ["mobile"]}}, {"tags": []}, True, id="nin-empty-array"),
    pytest.param({"tags": {"$in": [1]}}, {"tags": [True, "1", [1]]}, False, id="in-array-strict-types"),
    # comparisons
    pytest.param({"age": {"$gt": 33}}, USER, True, id="gt"),
    pytest.param({"age": {"$gt": 34}}, USER, False, id="gt-equal"),
    pytest.param({"age": {"$gte": 34}}, USER, True, id="gte-equal"),
    pytest.param({"age": {"$lt": 34}}, USER, False, id="lt-equal"),
    pytest.param({"age": {"$lte": 34}}, USER, True, id="lte-equal"),
    pytest.param({"score": {"$gt": 7, "$lt": 8}}, USER, True, id="gt-lt-float-range"),
    pytest.param({"age": {"$gte": 18, "$lt": 65}}, USER, True, id="range-inside"),
    pytest.param({"age": {"$gte": 18, "$lt": 30}}, USER, False, id="range-outside"),
    pytest.param(
        {"signup": {"$gte": "2024-01-01", "$lt": "2025-01-01"}}, USER, True, id="string-range-iso-dates"
    ),
    pytest.param({"signup": {"$lt": "2024-03-01"}}, USER, False, id="string-lt"),
    pytest.param({"age": {"$gt": 10**30}}, {"age": 10**31}, True, id="gt-big-integers"),
    # $exists
    pytest.param({"email": {"$exists": True}}, USER, True, id="exists-true-present"),
    pytest.param({"missing": {"$exists": True}}, USER, False, id="exists-true-missing"),
    pytest.param({"missing": {"$exists": False}}, USER, True, id="exists-false-missing"),
    pytest.param({"email": {"$exists": False}}, USER, False, id="exists-false-present"),
    pytest.param({"nothing": {"$exists": True}}, USER, False, id="exists-true-null-counts-as-absent"),
    pytest.param({"nothing": {"$exists": False}}, USER, True, id="exists-false-null"),
    pytest.param({"beta": {"$exists": True}}, {"beta": False}, True, id="exists-true-false-value"),
    pytest.param({"n": {"$exists": True}}, {"n": 0}, True, id="exists-true-zero"),
    # $regex
    pytest.param({"email": {"$regex": "@example\\.com$"}}, USER, True, id="regex-suffix"),
    pytest.param({"email": {"$regex": "example"}}, USER, True, id="regex-searches-anywhere"),
    pytest.param({"email": {"$regex": "^example"}}, USER, False, id="regex-anchored"),
    pytest.param({"email": {"$regex": "EXAMPLE"}}, USER, False, id="regex-case-sensitive"),
    pytest.param({"email": {"$regex": "(?i)EXAMPLE"}}, USER, True, id="regex-inline-flag"),
    pytest.param({"age": {"$regex": "^34$"}}, USER, True, id="regex-number-as-its-string-form"),
    pytest.param(
        {"tags": {"$regex": "^early-adopter,mobile$"}}, USER, True, id="regex-array-joined-by-commas"
    ),
    pytest.param({"email": {"$regexi": "EXAMPLE"}}, USER, True, id="regexi-case-insensitive"),
    # dotted paths
    pytest.param({"user.country": "CA"}, USER, True, id="path"),
    pytest.param({"user.device.os": {"$in": ["ios", "android"]}}, USER, True, id="path-deep"),
    pytest.param({"user.device.model": {"$exists": False}}, USER, True, id="path-missing-leaf"),
    pytest.param({"user.missing.os": {"$exists": False}}, USER, True, id="path-missing-middle"),
    pytest.param({"country.code": {"$exists": False}}, USER, True, id="path-through-a-string"),
    pytest.param({"tags.0": "early-adopter"}, USER, True, id="path-indexes-arrays"),
    pytest.param({"tags.length": 2}, USER, True, id="path-array-length"),
    pytest.param({"tags.2": {"$exists": False}}, USER, True, id="path-index-past-the-end"),
    pytest.param({"user.country": "CA"}, {"user.country": "CA"}, False, id="path-is-not-a-flat-key"),
    # $and / $or / $not
    pytest.param({"$and": [{"plan": "pro"}, {"age": {"$gte": 18}}]}, USER, True, id="and"),
    pytest.param({"$and": [{"plan": "pro"}, {"age": {"$lt": 18}}]}, USER, False, id="and-one-fails"),
    pytest.param({"$and": []}, USER, True, id="and-empty-matches-everyone"),
    pytest.param({"$or": [{"plan": "free"}, {"country": "US"}]}, USER, True, id="or"),
    pytest.param({"$or": [{"plan": "free"}, {"country": "FR"}]}, USER, False, id="or-none"),
    pytest.param({"$or": []}, USER, True, id="or-empty-matches-everyone"),
    pytest.param({"$not": {"country": "FR"}}, USER, True, id="not"),
    pytest.param({"$not": {"country": "US"}}, USER, False, id="not-fails"),
    pytest.param({"$not": {}}, USER, False, id="not-empty-matches-nobody"),
    pytest.param({"age": {"$not": {"$gt": 40}}}, USER, True, id="not-under-attribute"),
    pytest.param({"age": {"$not": {"$gt": 18, "$lt": 65}}}, USER, False, id="not-under-attribute-range"),
    pytest.param({"country": {"$not": {"$regex": "^U"}}}, USER, False, id="not-regex"),
    pytest.param(
        {"$and": [{"user.device.os": "ios"}, {"$or": [{"plan": "free"}, {"$not": {"beta": False}}]}]},
        USER,
        True,
        id="nested-and-or-not",
    ),
    pytest.param(
        {"$or": [{"$and": [{"country": "US"}, {"age": {"$lt": 30}}]}, {"$and": [{"country": "CA"}]}]},
        USER,
        False,
        id="nested-or-of-ands",
    ),
    pytest.param(
        {"country": "US", "$or": [{"plan": "pro"}, {"plan": "team"}], "$not": {"tags": {"$in": ["banned"]}}},
        USER,
        True,
        id="logical-and-fields-side-by-side",
    ),
]

# A missing attribute reads as null, which JavaScript converts to 0 or "null" (as GrowthBook).
MISSING_ATTRIBUTE_CASES = [
    pytest.param({"$eq": "US"}, False, id="eq"),
    pytest.param({"$eq": None}, True, id="eq-null"),
    pytest.param({"$ne": "US"}, True, id="ne-matches-missing"),
    pytest.param({"$ne": None}, False, id="ne-null"),
    pytest.param({"$in": ["US", "CA"]}, False, id="in"),
    pytest.param({"$in": ["US", None]}, True, id="in-with-null-listed"),
    pytest.param({"$nin": ["US", "CA"]}, True, id="nin-matches-missing"),
    pytest.param({"$nin": ["US", None]}, False, id="nin-with-null-listed"),
    pytest.param({"$gt": 5}, False, id="gt"),
    pytest.param({"$gte": -10}, True, id="gte-null-as-zero"),
    pytest.param({"$lt": 10}, True, id="lt-null-as-zero"),
    pytest.param({"$lte": "z"}, False, id="lte-string"),
    pytest.param({"$regex": "^null$"}, True, id="regex-null-as-its-string-form"),
    pytest.param({"$regex": "^$"}, False, id="regex-empty"),
    pytest.param({"$exists": True}, False, id="exists-true"),
    pytest.param({"$exists": False}, True, id="exists-false"),
    pytest.param({"$ne": "FR", "$exists": True}, False, id="ne-with-exists-requires-it"),
    pytest.param({"$not": {"$gt": 5}}, True, id="not-gt"),
]

# Types mix as in GrowthBook's JavaScript SDK (ToNumber, ToString); $in and $eq stay strict.
TYPE_MISMATCH_CASES = [
    pytest.param({"age": {"$gt": 5}}, {"age": "10"}, True, id="gt-number-vs-string"),
    pytest.param({"age": {"$gt": "5"}}, {"age": 10}, True, id="gt-string-vs-number"),
    pytest.param({"age": {"$gt": "5"}}, {"age": "10"}, False, id="gt-string-vs-string-code-units"),
    pytest.param({"age": {"$gt": 5}}, {"age": "ten"}, False, id="gt-number-vs-non-numeric-string"),
    pytest.param({"age": {"$lte": 5}}, {"age": "ten"}, False, id="lte-nan-matches-nothing"),
    pytest.param({"age": {"$lt": 5}}, {"age": True}, True, id="lt-number-vs-bool"),
    pytest.param({"age": {"$gt": 5}}, {"age": " 0x10 "}, True, id="gt-hex-string"),
    pytest.param({"age": {"$gte": 1}}, {"age": [2, 3]}, False, id="gte-number-vs-array"),
    pytest.param({"age": {"$lte": 5}}, {"age": {"years": 3}}, False, id="lte-number-vs-object"),
    pytest.param({"age": {"$gt": 5}}, {"age": None}, False, id="gt-number-vs-null"),
    pytest.param({"age": 10}, {"age": "10"}, True, id="eq-number-vs-string"),
    pytest.param({"age": "10"}, {"age": 10}, True, id="eq-string-vs-number"),
    pytest.param({"n": "0.000001"}, {"n": 1e-6}, True, id="eq-string-vs-number-javascript-digits"),
    pytest.param({"n": "1e-7"}, {"n": 1e-7}, True, id="eq-string-vs-number-exponent"),
    pytest.param({"n": "1,2"}, {"n": [1, 2]}, True, id="eq-string-vs-array"),
    pytest.param({"n": "null"}, {}, True, id="eq-string-null-vs-missing"),
    pytest.param({"n": 0}, {}, True, id="eq-zero-vs-missing"),
    pytest.param({"flag": 1}, {"flag": True}, True, id="eq-number-vs-bool"),
    pytest.param({"flag": True}, {"flag": 1}, True, id="eq-bool-vs-number"),
    pytest.param({"flag": True}, {"flag": "yes"}, True, id="eq-true-vs-truthy-string"),
    pytest.param({"flag": True}, {}, False, id="eq-true-vs-missing"),
    pytest.param({"flag": False}, {"flag": 0}, True, id="eq-false-vs-zero"),
    pytest.param({"flag": False}, {}, False, id="eq-false-vs-missing"),
    pytest.param({"flag": {"$eq": 1}}, {"flag": True}, False, id="eq-operator-strict"),
    pytest.param({"flag": {"$eq": "1"}}, {"flag": 1}, False, id="eq-operator-strict-string"),
    pytest.param({"o": {"b": 1, "a": 2}}, {"o": {"a": 2, "b": 1}}, False, id="eq-object-key-order-matters"),
    pytest.param({"flag": {"$in": [1]}}, {"flag": True}, False, id="in-number-vs-bool"),
    pytest.param({"flag": {"$in": [True]}}, {"flag": 1}, False, id="in-bool-vs-number"),
    pytest.param({"flag": {"$in": ["1"]}}, {"flag": 1}, False, id="in-string-vs-number"),
    pytest.param({"flag": {"$nin": [1]}}, {"flag": True}, True, id="nin-number-vs-bool"),
    pytest.param({"flag": {"$ne": 1}}, {"flag": True}, True, id="ne-number-vs-bool"),
    pytest.param({"tags": [1, 2]}, {"tags": [True, 2]}, False, id="eq-array-number-vs-bool"),
    pytest.param({"obj": {"a": 1}}, {"obj": {"a": True}}, False, id="eq-object-number-vs-bool"),
    pytest.param({"obj": {"a": 1}}, {"obj": "{'a': 1}"}, False, id="eq-object-vs-string"),
    pytest.param({"email": {"$regex": "a"}}, {"email": {"a": "a"}}, False, id="regex-vs-object"),
    pytest.param({"email": {"$regex": "1"}}, {"email": 1}, True, id="regex-vs-number"),
    pytest.param({"v": {"$vgt": "1.9.0"}}, {"v": "1.10.0"}, True, id="vgt-numeric-parts"),
    pytest.param({"v": {"$vlt": "1.0.0"}}, {"v": "1.0.0-rc.1"}, True, id="vlt-prerelease"),
    pytest.param({"v": {"$veq": "2"}}, {"v": 2}, True, id="veq-number-attribute"),
    pytest.param({"tags": {"$all": ["mobile"]}}, USER, True, id="all"),
    pytest.param({"tags": {"$alli": ["MOBILE"]}}, USER, True, id="alli"),
    pytest.param({"tags": {"$size": {"$gte": 2}}}, USER, True, id="size-operator"),
    pytest.param({"tags": {"$elemMatch": {"$regex": "^mob"}}}, USER, True, id="elem-match-operator"),
    pytest.param({"n": {"$elemMatch": {"$eq": 0}}}, {"n": [0]}, False, id="elem-match-skips-falsy"),
    pytest.param({"l": {"$elemMatch": {"a": 1}}}, {"l": [{"a": 1}]}, True, id="elem-match-document"),
    pytest.param({"country": {"$ini": ["us"]}}, USER, True, id="ini"),
    pytest.param({"country": {"$nini": ["us"]}}, USER, False, id="nini"),
    pytest.param({"user": {"$type": "object"}}, USER, True, id="type-object"),
    pytest.param({"$nor": [{"plan": "free"}]}, USER, True, id="nor"),
    pytest.param({"$nor": []}, USER, False, id="nor-empty-matches-nobody"),
    pytest.param({"$groups": {"$elemMatch": {"$eq": "a"}}}, {"$groups": ["a"]}, True, id="dollar-attribute"),
]


@pytest.mark.parametrize(("doc", "attributes", "expected"), CASES + TYPE_MISMATCH_CASES)
def test_evaluate_condition__operator_table__matches_as_documented(
    doc: dict, attributes: dict, expected: bool
) -> None:
    assert evaluate_condition(doc, attributes) is expected
    assert compile_condition(doc)(attributes) is expected


@pytest.mark.parametrize(("operators", "expected"), MISSING_ATTRIBUTE_CASES)
def test_evaluate_condition__missing_attribute__growthbook_semantics(operators: dict, expected: bool) -> None:
    assert evaluate_condition({"country": operators}, {"plan": "pro"}) is expected
    # A null attribute is the same as a missing one
    assert evaluate_condition({"country": operators}, {"country": None}) is expected
    # So is a missing path
    assert evaluate_condition({"geo.country": operators}, {"geo": "not-an-object"}) is expected


@pytest.mark.parametrize(("doc", "attributes", "expected"), CASES)
def test_validate_condition__valid_documents__accepted(doc: dict, attributes: dict, expected: bool) -> None:
    assert validate_condition(doc) is None


# Odd attribute values and attribute containers: evaluation must return a bool, never raise.
ODD_VALUES = [
    None,
    True,
    0,
    -1,
    10**400,
    1e308,
    math.nan,
    math.inf,
    "",
    "\ud800",
    "x" * 10_000,
    [],
    [None, [1], {"a": 1}, math.nan, "US", 34],
    {},
    {"country": "US"},
    (1, "US"),
    {1, 2},
    b"US",
    object(),
    ["US"] * 1000,
]
ODD_CONDITIONS = [
    {"x": "US"},
    {"x": 34},
    {"x": True},
    {"x": None},
    {"x": [1, 2]},
    {"x": {"a": 1}},
    {"x": {"$ne": "US"}},
    {"x": {"$in": ["US", 1, True, None]}},
    {"x": {"$nin": ["US", 1.5]}},
    {"x": {"$gt": 5, "$lte": "z"}},
    {"x": {"$gte": "a"}},
    {"x": {"$exists": True}},
    {"x": {"$regex": "^U"}},
    {"x": {"$not": {"$lt": 0}}},
    {"x.y.z": {"$in": ["US"]}},
    {"$or": [{"x": {"$gt": 0}}, {"x.country": "US"}]},
]


@pytest.mark.parametrize("doc", ODD_CONDITIONS, ids=repr)
def test_compile_condition__odd_attribute_values__returns_bool_never_raises(doc: dict) -> None:
    predicate = compile_condition(doc)
    for value in ODD_VALUES:
        assert predicate({"x": value}) in (True, False)
    for attributes in (None, [], "x", 42, {"x": {"y": {"z": "US"}}}):
        assert predicate(attributes) in (True, False)


def test_compile_condition__attributes_not_a_mapping__treated_as_no_attributes() -> None:
    assert compile_condition({"x": {"$exists": False}})(None) is True
    assert compile_condition({"x": {"$exists": True}})(["x"]) is False
    assert compile_condition({})("anything") is True


# (document, text the message must contain: the path and the operator or problem)
MALFORMED = [
    pytest.param(None, "must be an object", id="not-a-dict-none"),
    pytest.param([{"plan": "pro"}], "must be an object", id="not-a-dict-list"),
    pytest.param("plan == pro", "must be an object", id="not-a-dict-string"),
    pytest.param(
        {"plan": {"$equals": "pro"}}, "plan.$equals: unknown operator $equals", id="unknown-operator"
    ),
    pytest.param({"$nor": {"plan": "pro"}}, "$nor: $nor takes a list of conditions", id="nor-not-list"),
    pytest.param(
        {"tags": {"$elemMatch": "a"}}, "tags.$elemMatch: $elemMatch takes an operator", id="elem-match-str"
    ),
    pytest.param(
        {"tags": {"$eq": ["a"]}}, "tags.$eq: $eq compares strings", id="eq-array-never-equal-in-sdks"
    ),
    pytest.param({"tags": {"$ne": {"a": 1}}}, "tags.$ne: $ne compares strings", id="ne-object"),
    pytest.param({"tags": {"$all": "a"}}, "tags.$all: $all takes a list", id="all-not-list"),
    pytest.param({"tags": {"$ini": "a"}}, "tags.$ini: $ini takes a list", id="ini-not-list"),
    pytest.param({"tags": {"$size": "3"}}, "tags.$size: $size takes a number", id="size-string"),
    pytest.param({"tags": {"$type": "list"}}, "tags.$type: $type takes one of", id="type-unknown"),
    pytest.param({"v": {"$vgt": 1.2}}, "v.$vgt: $vgt takes a version string", id="version-number"),
    pytest.param({"id": {"$inGroup": "beta"}}, "id.$inGroup: $inGroup needs saved groups", id="in-group"),
    pytest.param({"ua": {"$regexi": "(?=a)"}}, "ua.$regexi: not a pattern", id="regexi-lookahead"),
    pytest.param({"country": {"$in": "US"}}, "country.$in: $in takes a list", id="in-not-list"),
    pytest.param({"country": {"$nin": {"US": 1}}}, "country.$nin: $nin takes a list", id="nin-not-list"),
    pytest.param(
        {"country": {"$in": ["US", ["CA"]]}}, "country.$in[1]: $in values must be", id="in-nested-list"
    ),
    pytest.param(
        {"country": {"$nin": [{"a": 1}]}}, "country.$nin[0]: $nin values must be", id="nin-object-item"
    ),
    pytest.param({"$and": {"plan": "pro"}}, "$and: $and takes a list of conditions", id="and-not-list"),
    pytest.param({"$or": "plan"}, "$or: $or takes a list of conditions", id="or-not-list"),
    pytest.param(
        {"$and": [{"plan": "pro"}, "x"]}, "$and[1]: $and takes a list of conditions", id="and-item-not-dict"
    ),
    pytest.param({"$or": [["plan"]]}, "$or[0]: $or takes a list of conditions", id="or-item-not-dict"),
    pytest.param({"$not": [{"plan": "pro"}]}, "$not: $not takes a condition", id="not-not-dict"),
    pytest.param(
        {"plan": {"$not": "pro"}}, "plan.$not: $not under an attribute takes", id="field-not-not-dict"
    ),
    pytest.param(
        {"plan": {"$not": {"a": 1}}}, "plan.$not: $not under an attribute takes", id="field-not-literal"
    ),
    pytest.param(
        {"email": {"$regex": 5}}, "email.$regex: $regex takes a pattern string", id="regex-not-string"
    ),
    pytest.param({"email": {"$regex": "(unclosed"}}, "email.$regex: not a pattern", id="regex-invalid"),
    pytest.param({"email": {"$regex": "[z-a]"}}, "email.$regex: not a pattern", id="regex-bad-range"),
    pytest.param(
        {"email": {"$regex": "a" * (MAX_REGEX_LENGTH + 1)}},
        "email.$regex: the pattern is 513 characters long",
        id="regex-too-long",
    ),
    # What a backtracking engine needs and the linear-time one refuses, when saved rather than later
    pytest.param({"email": {"$regex": r"^(a)\1$"}}, "email.$regex: not a pattern", id="regex-backreference"),
    pytest.param({"email": {"$regex": "^(?=a)"}}, "lookarounds", id="regex-lookahead"),
    pytest.param({"email": {"$regex": "(?<!a)b"}}, "lookarounds", id="regex-negative-lookbehind"),
    pytest.param({"email": {"$regex": "(?>a+)b"}}, "email.$regex: not a pattern", id="regex-atomic-group"),
    pytest.param({"email": {"$regex": "a\\Z"}}, "email.$regex: not a pattern", id="regex-python-only-escape"),
    pytest.param({"email": {"$regex": "(.{0,100}){10}"}}, "too complex", id="regex-too-complex"),
    pytest.param(
        {"email": {"$exists": "yes"}}, "email.$exists: $exists takes true or false", id="exists-string"
    ),
    pytest.param({"email": {"$exists": 1}}, "email.$exists: $exists takes true or false", id="exists-number"),
    pytest.param({"age": {"$gt": None}}, "age.$gt: $gt takes a number or a string", id="gt-null"),
    pytest.param({"age": {"$lte": [1]}}, "age.$lte: $lte takes a number or a string", id="lte-list"),
    pytest.param({"age": {"$lt": True}}, "age.$lt: $lt takes a number or a string", id="lt-bool"),
    pytest.param({"age": {"$gte": math.inf}}, "age.$gte: $gte takes a finite number", id="gte-infinite"),
    pytest.param(
        {"$in": ["US"]}, "$in: $in must be applied to an attribute", id="field-operator-at-top-level"
    ),
    pytest.param(
        {"$and": [{"$gt": 5}]}, "$and[0].$gt: $gt must be applied to an attribute", id="field-op-nested"
    ),
    pytest.param(
        {"age": {"$and": [{"$gt": 5}]}}, "age.$and: $and combines whole conditions", id="and-under-field"
    ),
    pytest.param({"age": {"$or": []}}, "age.$or: $or combines whole conditions", id="or-under-field"),
    pytest.param({"age": {"$gt": 5, "years": 3}}, "age: mixes operators and plain keys", id="mixed-keys"),
    pytest.param(
        {"user": {"country": {"$in": ["US"]}}}, "user.country.$in: operator $in inside", id="nested-op"
    ),
    pytest.param({"": "x"}, "attribute path '' has an empty segment", id="empty-path"),
    pytest.param({"user..country": "x"}, "user..country: attribute path", id="empty-path-segment"),
    pytest.param({1: "x"}, "keys must be strings", id="non-string-key"),
    pytest.param({"plan": {"pro"}}, "plan: not a JSON value", id="set-value"),
    pytest.param({"plan": {"$eq": math.nan}}, "plan.$eq: numbers must be finite", id="eq-nan"),
    pytest.param({"plan": {"$in": [math.nan]}}, "plan.$in[0]: numbers must be finite", id="in-nan"),
]


@pytest.mark.parametrize(("doc", "message"), MALFORMED)
def test_validate_condition__malformed_document__refused_naming_path_and_problem(
    doc: object, message: str
) -> None:
    with pytest.raises(ConditionError, match=re.escape(message)):
        validate_condition(doc)
    with pytest.raises(ConditionError, match=re.escape(message)):
        compile_condition(doc)
    with pytest.raises(ConditionError, match=re.escape(message)):
        evaluate_condition(doc, {})


def test_condition_error__any_malformed_document__is_a_value_error_with_path() -> None:
    with pytest.raises(ValueError) as raised:
        validate_condition({"$or": [{"plan": "pro"}, {"age": {"$between": [1, 2]}}]})
    assert isinstance(raised.value, ConditionError)
    assert raised.value.path == "$or[1].age.$between"
    assert raised.value.problem.startswith("unknown operator $between; supported: $and, $or, $nor, $not, $eq")


def _nested_and(levels: int) -> dict:
    doc: dict = {"plan": "pro"}
    for _ in range(levels):
        doc = {"$and": [doc]}
    return doc


def _nested_field_not(levels: int) -> dict:
    operators: dict = {"$eq": 1}
    for _ in range(levels):
        operators = {"$not": operators}
    return operators


def test_validate_condition__nesting_at_limit__accepted() -> None:
    doc = _nested_and(MAX_DEPTH - 1)  # the top document plus MAX_DEPTH - 1 nested ones
    validate_condition(doc)
    assert evaluate_condition(doc, {"plan": "pro"}) is True


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(_nested_and(MAX_DEPTH), id="and"),
        pytest.param(_nested_and(200), id="very-deep-and"),
        pytest.param({"x": _nested_field_not(MAX_DEPTH)}, id="field-not"),
        pytest.param({"x": [[[[[[[[[[[1]]]]]]]]]]]}, id="literal-arrays"),
    ],
)
def test_validate_condition__nesting_too_deep__refused(doc: dict) -> None:
    with pytest.raises(ConditionError, match=f"nested deeper than {MAX_DEPTH} levels"):
        validate_condition(doc)


def test_validate_condition__self_referencing_document__refused_not_recursion_error() -> None:
    doc: dict = {"$and": []}
    doc["$and"].append(doc)
    with pytest.raises(ConditionError, match="nested deeper"):
        validate_condition(doc)


def test_validate_condition__regex_at_length_limit__accepted() -> None:
    validate_condition({"email": {"$regex": "a" * MAX_REGEX_LENGTH}})


def test_operators__documented_list__every_one_compiles() -> None:
    arguments = {
        "$eq": "x",
        "$ne": "x",
        "$in": ["x"],
        "$nin": ["x"],
        "$ini": ["x"],
        "$nini": ["x"],
        "$all": ["x"],
        "$alli": ["x"],
        "$elemMatch": {"$eq": "x"},
        "$size": 2,
        "$gt": 1,
        "$gte": 1,
        "$lt": 1,
        "$lte": 1,
        "$exists": True,
        "$type": "string",
        "$regex": "x",
        "$regexi": "x",
        "$veq": "1.0.0",
        "$vne": "1.0.0",
        "$vgt": "1.0.0",
        "$vgte": "1.0.0",
        "$vlt": "1.0.0",
        "$vlte": "1.0.0",
        "$not": {"$eq": "x"},
        "$inGroup": "beta",
        "$notInGroup": "beta",
    }
    groups = {"beta": ["x"]}
    for operator in OPERATORS:
        if operator in ("$and", "$or", "$nor"):
            compile_condition({operator: [{"a": "x"}]})
        elif operator == "$not":
            compile_condition({operator: {"a": "x"}})
        else:
            compile_condition({"a": {operator: arguments[operator]}}, saved_groups=groups)


@pytest.mark.parametrize(
    ("doc", "attributes", "expected"),
    [
        pytest.param({"name": {"$regx": "a"}}, {"name": "a"}, False, id="unknown-operator-matches-nobody"),
        pytest.param({"name": {"$not": {"$regx": "a"}}}, {"name": "a"}, True, id="negated-unknown-operator"),
        pytest.param({"name": {"$regex": "(?=a)"}}, {"name": "a"}, False, id="pattern-re2-refuses"),
        pytest.param({"n": {"$in": 1}}, {"n": 1}, False, id="in-without-a-list"),
        pytest.param({"n": {"$nin": 1}}, {"n": 1}, False, id="nin-without-a-list"),
        pytest.param({"n": {"$eq": [1]}}, {"n": [1]}, False, id="eq-array-never-identical"),
        pytest.param({"n": {"$gt": 1, "x": 2}}, {"n": {"$gt": 1, "x": 2}}, True, id="mixed-keys-a-literal"),
        pytest.param({"$and": {"a": 1}}, {"a": 1}, False, id="and-not-a-list"),
        pytest.param(_nested_and(200), {"plan": "pro"}, False, id="too-deep"),
        pytest.param({"id": {"$inGroup": "beta"}}, {"id": 1}, False, id="in-group-without-groups"),
        pytest.param({"id": {"$notInGroup": "beta"}}, {"id": 1}, True, id="not-in-group-without-groups"),
    ],
)
def test_compile_condition__lenient_malformed_part__the_specification_answer_never_raises(
    doc: dict, attributes: dict, expected: bool
) -> None:
    assert compile_condition(doc, strict=False)(attributes) is expected


def test_compile_condition__saved_groups__membership_of_the_group() -> None:
    groups = {"beta": ["user-1", 2]}
    predicate = compile_condition({"id": {"$inGroup": "beta"}}, saved_groups=groups)
    assert [predicate({"id": value}) for value in ("user-1", 2, "2", "user-2")] == [True, True, False, False]
    with pytest.raises(ConditionError, match="unknown saved group"):
        compile_condition({"id": {"$inGroup": "alpha"}}, saved_groups=groups)


@pytest.mark.parametrize(
    ("version", "padded"),
    [
        ("1.2.3", "    1-    2-    3-~"),
        ("v1.2.3+build.7", "    1-    2-    3-~"),
        ("1.0.0-beta.2", "    1-    0-    0-beta-    2"),
        (None, "    0"),
        (12, "   12"),
    ],
)
def test_padded_version__growthbook_examples__padded_string(version: object, padded: str) -> None:
    assert conditions.padded_version(version) == padded


def test_evaluate_condition__document_mutated_after_use__uses_new_content() -> None:
    doc = {"plan": "pro"}
    assert evaluate_condition(doc, {"plan": "pro"}) is True
    doc["plan"] = "free"
    assert evaluate_condition(doc, {"plan": "pro"}) is False


def test_evaluate_condition__documents_equal_in_python_but_not_json__cached_apart() -> None:
    # {"x": 1} == {"x": True} in Python, but they are different conditions
    assert evaluate_condition({"x": 1}, {"x": 2}) is False
    assert evaluate_condition({"x": True}, {"x": 2}) is True  # 2 is truthy
    assert evaluate_condition({"x": 1.0}, {"x": 1}) is True


def test_compile_condition__regex__compiled_once_at_compile_time(monkeypatch: pytest.MonkeyPatch) -> None:
    predicate = compile_condition({"email": {"$regex": "@example\\.com$"}})

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pattern compiled during evaluation")

    monkeypatch.setattr(conditions, "regex_compile", no_compiling)
    assert predicate({"email": "ada@example.com"}) is True


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        pytest.param({"email": "a" * MAX_REGEX_SUBJECT_LENGTH}, True, id="at-the-bound-matched"),
        pytest.param({"email": "a" * (MAX_REGEX_SUBJECT_LENGTH + 1)}, False, id="past-the-bound-no-match"),
    ],
)
def test_evaluate_condition__regex_on_a_long_attribute__matched_up_to_the_bound_only(
    attributes: dict, expected: bool
) -> None:
    assert evaluate_condition({"email": {"$regex": "^a+$"}}, attributes) is expected
    # Negation sees the same answer: a string past the bound is one the pattern does not match.
    assert evaluate_condition({"email": {"$not": {"$regex": "^a+$"}}}, attributes) is not expected


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"plan": "pro"}, id="one-clause"),
        pytest.param({"country": {"$in": ["US", "CA", "GB"]}, "age": {"$gte": 18}}, id="two-clauses"),
        pytest.param(
            {
                "country": {"$in": ["US", "CA"]},
                "email": {"$regex": "@example\\.com$"},
                "user.device.os": "ios",
            },
            id="three-clauses-regex-path",
        ),
    ],
)
def test_compile_condition__realistic_rule__at_least_100k_evaluations_per_second(doc: dict) -> None:
    predicate = compile_condition(doc)
    assert predicate(USER) is True
    number = 20_000
    best = min(timeit.repeat(lambda: predicate(USER), number=number, repeat=5))
    # The target is 100,000/s on one core; measured ~0.5-5 M/s. Assert a 2x margin below the target
    # only, so a loaded CI machine does not fail the build.
    assert number / best > 50_000
