"""The flag editor's condition builder (features/static/features/condition_builder.js), run under Node,
checked against the evaluator it writes for (experiments.conditions).

The builder must only write documents the server's strict validation accepts, meaning what the
sentence says; documents it cannot show must stay JSON rather than be rewritten.
"""

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from experiments.conditions import evaluate_condition, validate_condition

BUILDER = Path(__file__).resolve().parents[2] / "features" / "static" / "features" / "condition_builder.js"

# Reads {"groups": [...], "documents": [...]} on stdin; answers, per group, toDocument and the words,
# and per document, fromDocument and the document the builder writes back from it.
RUNNER = """
const C = require(process.argv[1]);
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const built = input.groups.map((group) => ({...C.toDocument(group), words: C.describe(group)}));
const shown = input.documents.map((document) => {
  const result = C.fromDocument(document);
  return result.group ? {group: result.group, again: C.toDocument(result.group).document, words: C.describe(result.group)}
                      : {error: result.error};
});
const operators = Object.keys(C.OPERATORS);
process.stdout.write(JSON.stringify({built, shown, operators}));
"""


def run_builder(groups: list[dict[str, Any]] = (), documents: list[Any] = ()) -> dict[str, Any]:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the condition builder's tests need node 20+")
    completed = subprocess.run(
        ["node", "-e", RUNNER, str(BUILDER)],
        input=json.dumps({"groups": list(groups), "documents": list(documents)}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(completed.stdout)


def clause(attribute: str, operator: str, text: str = "") -> dict[str, str]:
    return {"attribute": attribute, "operator": operator, "text": text}


def top(*items: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "and", "items": list(items)}


# clause -> the document written, a unit it matches, a unit it does not, the words
CASES = [
    (clause("country", "is", "DE"), {"country": "DE"}, {"country": "DE"}, {"country": "FR"}, "country is equal to DE"),
    (clause("n", "is", "5"), {"n": 5}, {"n": "5"}, {"n": 6}, "n is equal to 5"),
    (clause("id", "is", '"42"'), {"id": "42"}, {"id": 42}, {"id": 43}, 'id is equal to "42"'),
    (clause("beta", "is", "true"), {"beta": True}, {"beta": True}, {"beta": False}, "beta is equal to true"),
    (clause("plan", "$ne", "free"), {"plan": {"$ne": "free"}}, {"plan": "pro"}, {"plan": "free"}, "plan is not equal to free"),
    (clause("country", "$in", "DE, FR"), {"country": {"$in": ["DE", "FR"]}}, {"country": "FR"}, {"country": "IT"},
     "country is one of DE, FR"),
    (clause("tier", "$in", '1, 2, "a,b"'), {"tier": {"$in": [1, 2, "a,b"]}}, {"tier": "a,b"}, {"tier": "1"},
     'tier is one of 1, 2, "a,b"'),
    (clause("country", "$nin", "DE"), {"country": {"$nin": ["DE"]}}, {"country": "FR"}, {"country": "DE"},
     "country is not one of DE"),
    (clause("country", "$ini", "de"), {"country": {"$ini": ["de"]}}, {"country": "DE"}, {"country": "FR"},
     "country is one of (any case) de"),
    (clause("country", "$nini", "de"), {"country": {"$nini": ["de"]}}, {"country": "FR"}, {"country": "DE"},
     "country is not one of (any case) de"),
    (clause("age", "$gt", "17"), {"age": {"$gt": 17}}, {"age": 18}, {"age": 17}, "age is greater than 17"),
    (clause("age", "$gte", "18"), {"age": {"$gte": 18}}, {"age": 18}, {"age": 17}, "age is at least 18"),
    (clause("age", "$lt", "65"), {"age": {"$lt": 65}}, {"age": 64}, {"age": 65}, "age is less than 65"),
    (clause("age", "$lte", "65"), {"age": {"$lte": 65}}, {"age": 65}, {"age": 66}, "age is at most 65"),
    (clause("signup", "$gte", "2024-01-01"), {"signup": {"$gte": "2024-01-01"}}, {"signup": "2024-03-01"},
     {"signup": "2023-12-31"}, "signup is at least 2024-01-01"),
    (clause("email", "$exists"), {"email": {"$exists": True}}, {"email": "a@b.c"}, {}, "email is set"),
    (clause("email", "!$exists"), {"email": {"$exists": False}}, {}, {"email": "a@b.c"}, "email is not set"),
    (clause("email", "$regex", r"@example\.com$"), {"email": {"$regex": r"@example\.com$"}}, {"email": "a@example.com"},
     {"email": "a@example.org"}, r"email matches the pattern @example\.com$"),
    (clause("name", "$regexi", "^ann"), {"name": {"$regexi": "^ann"}}, {"name": "Anna"}, {"name": "Jo"},
     "name matches the pattern (any case) ^ann"),
    (clause("app", "$veq", "2.1.0"), {"app": {"$veq": "2.1.0"}}, {"app": "2.1.0"}, {"app": "2.1.1"}, "app is version 2.1.0"),
    (clause("app", "$vne", "2.1.0"), {"app": {"$vne": "2.1.0"}}, {"app": "2.1.1"}, {"app": "2.1.0"},
     "app is not version 2.1.0"),
    (clause("app", "$vgt", "2.1.0"), {"app": {"$vgt": "2.1.0"}}, {"app": "2.10.0"}, {"app": "2.1.0"},
     "app is above version 2.1.0"),
    (clause("app", "$vgte", "2.1.0"), {"app": {"$vgte": "2.1.0"}}, {"app": "2.1.0"}, {"app": "2.0.9"},
     "app is at least version 2.1.0"),
    (clause("app", "$vlt", "2.1.0"), {"app": {"$vlt": "2.1.0"}}, {"app": "2.1.0-beta"}, {"app": "2.1.0"},
     "app is below version 2.1.0"),
    (clause("app", "$vlte", "2.1.0"), {"app": {"$vlte": "2.1.0"}}, {"app": "2.1.0"}, {"app": "2.1.1"},
     "app is at most version 2.1.0"),
    (clause("tags", "$elemMatch", "vip"), {"tags": {"$elemMatch": {"$eq": "vip"}}}, {"tags": ["a", "vip"]},
     {"tags": ["a"]}, "tags contains vip"),
    (clause("tags", "$all", "a, b"), {"tags": {"$all": ["a", "b"]}}, {"tags": ["b", "c", "a"]}, {"tags": ["a"]},
     "tags contains all of a, b"),
    (clause("tags", "$size", "2"), {"tags": {"$size": 2}}, {"tags": [1, 2]}, {"tags": [1]}, "tags has a length of 2"),
    (clause("meta", "$type", "object"), {"meta": {"$type": "object"}}, {"meta": {}}, {"meta": []}, "meta is of type object"),
    (clause("n", "$eq", "5"), {"n": {"$eq": 5}}, {"n": 5}, {"n": "5"}, "n is exactly (same type) 5"),
]  # fmt: skip


@pytest.fixture(scope="module")
def cases_run() -> dict[str, Any]:
    return run_builder(groups=[top(case[0]) for case in CASES], documents=[case[1] for case in CASES])


@pytest.mark.parametrize(
    ("index", "case"), list(enumerate(CASES)), ids=[c[0]["operator"] + " " + c[0]["text"] for c in CASES]
)
def test_condition_builder__each_operator__writes_a_valid_document_meaning_its_words(cases_run, index, case):
    given, document, matching, other, words = case
    built = cases_run["built"][index]
    assert built["errors"] == []
    assert built["document"] == document
    validate_condition(built["document"])  # the server's strict check, as at save
    assert evaluate_condition(built["document"], matching) is True
    assert evaluate_condition(built["document"], other) is False
    assert built["words"] == words
    # The builder shows the document it wrote as the same clause, and writes it back unchanged
    shown = cases_run["shown"][index]
    assert shown["group"]["items"] == [given]
    assert shown["again"] == document


def test_condition_builder__every_operator_is_covered_by_a_case(cases_run):
    assert sorted(cases_run["operators"]) == sorted({case[0]["operator"] for case in CASES})


def test_condition_builder__clauses_and_groups__combined_as_the_evaluator_reads_them():
    group = top(
        clause("age", "$gte", "18"),
        clause("age", "$lt", "65"),
        {
            "kind": "or",
            "items": [
                clause("plan", "is", "pro"),
                top(clause("country", "is", "DE"), clause("beta", "$exists")),
            ],
        },
        {"kind": "nor", "items": [clause("country", "is", "FR")]},
        {"kind": "or", "items": []},  # an empty group says nothing
    )
    result = run_builder(groups=[group])["built"][0]
    document = {
        "age": {"$gte": 18, "$lt": 65},
        "$or": [{"plan": "pro"}, {"$and": [{"country": "DE"}, {"beta": {"$exists": True}}]}],
        "$nor": [{"country": "FR"}],
    }
    assert result["document"] == document
    validate_condition(document)
    assert evaluate_condition(document, {"age": 30, "country": "DE", "beta": 1}) is True
    assert evaluate_condition(document, {"age": 30, "country": "FR", "plan": "pro"}) is False
    assert result["words"] == (
        "age is at least 18 and age is less than 65 and (plan is equal to pro or (country is equal to DE "
        "and beta is set)) and none of (country is equal to FR)"
    )


@pytest.mark.parametrize(
    "document",
    [
        {"$or": [{"plan": "pro", "country": "DE"}, {"beta": True}]},
        {"$and": [{"$or": [{"a": 1}, {"b": 2}]}, {"$or": [{"c": 3}, {"d": {"$exists": False}}]}]},
        {"$nor": [{"$or": [{"a": 1}]}], "age": {"$gt": 3, "$lte": 9}},
        {"$or": [{"$and": [{"a": 1}, {"b": 2}]}, {"c": {"$in": ["x", 2, True]}}]},
    ],
)
def test_condition_builder__power_users_documents__shown_and_written_back_unchanged(document):
    shown = run_builder(documents=[document])["shown"][0]
    assert shown["again"] == document
    assert list(shown["again"]) == list(document)  # keys in the same order, too


def test_condition_builder__same_attribute_twice__written_with_and_not_overwritten():
    group = top(clause("plan", "is", "pro"), clause("plan", "$ne", "free"), clause("plan", "is", "team"))
    document = run_builder(groups=[group])["built"][0]["document"]
    assert document == {"$and": [{"plan": "pro"}, {"plan": {"$ne": "free"}}, {"plan": "team"}]}
    validate_condition(document)


@pytest.mark.parametrize(
    ("given", "error"),
    [
        (clause("", "is", "DE"), "Name the attribute"),
        (clause("$in", "is", "DE"), "cannot start with $"),
        (clause("country", "is", ""), "Type a value"),
        (clause("country", "$in", " , "), "at least one value"),
        (clause("tags", "$size", "two"), "whole number"),
        (clause("meta", "$type", "date"), "Pick a type"),
        (clause("email", "$regex", "  "), "Type a pattern"),
        (clause("email", "$regex", "a\\"), "Not a pattern"),
        (clause("email", "$regex", "(?=a)b"), "lookarounds"),
        (clause("email", "$regexi", "(a)\\1"), "back-references"),
        (clause("app", "$vgt", ""), "Type a version"),
        (clause("x", "$where", "1"), "Pick an operator"),
        (clause("id", "is", '"42'), None),  # an unclosed quote is text, as typed
    ],
)
def test_condition_builder__unfinished_clause__an_error_not_a_document(given, error):
    result = run_builder(groups=[top(clause("plan", "is", "pro"), given)])["built"][0]
    if error is None:
        assert result["document"] == {"plan": "pro", "id": '"42'}
        return
    assert result["document"] is None
    assert [e["path"] for e in result["errors"]] == [[1]]
    assert error in result["errors"][0]["message"]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"$not": {"country": "FR"}}, "$not"),
        ({"tags": ["a", "b"]}, "a literal list"),
        ({"meta": {"a": 1}}, "a literal object"),
        ({"country": None}, "a literal null"),
        ({"country": {"$in": "DE"}}, "$in with"),
        ({"age": {"$gt": True}}, "$gt with"),
        ({"tags": {"$elemMatch": {"$gt": 1}}}, "$elemMatch in this form"),
        ({"country": {"$not": {"$in": ["FR"]}}}, "$not"),
        ({"$or": []}, "$or with an empty list"),
        ({"$groups": "beta"}, "$groups"),
        ([1], "a condition is an object"),
    ],
)
def test_condition_builder__document_it_cannot_show__stays_json_with_the_reason(document, reason):
    shown = run_builder(documents=[document])["shown"][0]
    assert "group" not in shown
    assert reason in shown["error"]


def _random_text(rng: random.Random) -> str:
    pieces = [
        "DE",
        "pro",
        "42",
        '"42"',
        "4.5",
        "-1",
        "true",
        "null",
        "a,b",
        '"a,b"',
        "",
        " ",
        "ü",
        "\\",
        '"',
        "1e3",
        "x y",
    ]
    return ", ".join(rng.choice(pieces) for _ in range(rng.randint(1, 3)))


def _random_group(rng: random.Random, operators: list[str], depth: int) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for _ in range(rng.randint(0, 4)):
        if depth < 3 and rng.random() < 0.25:
            items.append(
                {**_random_group(rng, operators, depth + 1), "kind": rng.choice(["and", "or", "nor"])}
            )
        else:
            operator = rng.choice(operators)
            text = rng.choice(["string", "number", "object"]) if operator == "$type" else _random_text(rng)
            items.append(
                clause(rng.choice(["country", "plan", "age", "tags", "a.b", "plan"]), operator, text)
            )
    return {"kind": "and", "items": items}


def test_condition_builder__random_groups__every_document_written_passes_strict_validation():
    # Given 600 random trees of clauses (every operator, awkward texts, repeated attributes, nested groups)
    rng = random.Random(20261207)
    operators = run_builder()["operators"]
    groups = [_random_group(rng, operators, 0) for _ in range(600)]
    built = run_builder(groups=groups)["built"]
    written = [result["document"] for result in built if result["document"] is not None]
    # Then every document the builder agreed to write is one the server accepts
    assert len(written) > 150
    for document in written:
        validate_condition(document)
    # and the builder shows each again and writes back the same document
    again = run_builder(documents=written)["shown"]
    assert [shown.get("again") for shown in again] == written
