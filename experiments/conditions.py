"""Targeting conditions: MongoDB-style documents over a unit's attributes.

One evaluator shared by experiment targeting and feature rules. Pure functions, no I/O.

A condition document maps attribute paths to expected values or operator objects, plus the
logical operators ``$and``, ``$or`` (lists of documents) and ``$not`` (a document). Every clause must
hold; ``{}`` matches everyone::

    {"country": {"$in": ["US", "CA"]}, "plan": "pro", "age": {"$gte": 18, "$lt": 65}}
    {"$or": [{"plan": "pro"}, {"user.beta": True}], "$not": {"country": "FR"}}

Semantics follow GrowthBook's ``evalCondition`` (itself modelled on MongoDB), with strict JSON types:

- Attributes are JSON values: strings, numbers (``int``/``float``; ``bool`` is not a number),
  booleans, ``null``, arrays, objects. ``"user.country"`` walks into nested objects; a missing
  attribute (or path) reads as ``null``, as in GrowthBook.
- ``{"plan": "pro"}`` is ``{"plan": {"$eq": "pro"}}``. ``$eq``/``$ne`` compare JSON values: no
  coercion (``5`` never equals ``"5"``, ``1`` never equals ``true``); ``1 == 1.0``; arrays and
  objects compare deeply. An array attribute equals only the same array (no MongoDB "contains").
- ``$gt $gte $lt $lte``: number against number or string against string (code-point order, which
  suits ISO 8601 dates); anything else, including a missing attribute, does not match.
- ``$in``/``$nin`` take a list of scalars. Against an array attribute ``$in`` matches when the two
  share an element (GrowthBook's intersection) and ``$nin`` when they share none.
- ``$exists: true`` matches an attribute that is present and not ``null``; ``$exists: false`` a
  missing or ``null`` one.
- ``$regex``: an RE2 pattern searched anywhere in a string attribute (anchor it with ``^``/``$``),
  in time linear in the string (``experiments.regex``: RE2 syntax, no backreferences or lookarounds,
  refused when saved). A string longer than ``MAX_REGEX_SUBJECT_LENGTH`` (1024) characters, or a
  non-string attribute, does not match (GrowthBook's JavaScript would coerce it).
- Negative operators match a unit that lacks the attribute, as in GrowthBook and MongoDB:
  ``{"country": {"$ne": "FR"}}`` and ``{"country": {"$nin": ["FR"]}}`` match a unit with no
  ``country``; add ``"$exists": true`` to require it. ``{"$not": {...}}`` likewise matches whatever the
  inner document does not.
- ``$and: []`` and ``$or: []`` match everyone (GrowthBook); ``$in: []`` matches no one.
- Evaluation never raises: a type mismatch simply does not match.

Deliberate differences from GrowthBook's JavaScript SDK, which coerces types: there ``"8"`` passes
``{"$gt": 5}``, a missing attribute passes ``{"$lt": 10}`` (null becomes 0) and ``{"n": "5"}`` matches
``5``; here none of them does. GrowthBook operators outside the list above (``$elemMatch``,
``$size``, ``$all``, ``$type``, ``$veq``..., ``$regexi``, ``$inGroup``) are refused as unknown.

``validate_condition`` also refuses documents nested more than ``MAX_DEPTH`` (10) levels of objects
and arrays, patterns longer than ``MAX_REGEX_LENGTH`` (512) characters and patterns RE2 cannot run
or that compile to more than 5000 instructions (``experiments.regex``).

Use ``validate_condition`` when a condition is saved, ``compile_condition`` once per configuration
load to get a fast predicate, and ``evaluate_condition`` for one-off checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from experiments.regex import MAX_PATTERN_LENGTH, MAX_SUBJECT_LENGTH, RegexError, regex_compile

__all__ = [
    "MAX_DEPTH",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_SUBJECT_LENGTH",
    "OPERATORS",
    "ConditionError",
    "Predicate",
    "compile_condition",
    "evaluate_condition",
    "validate_condition",
]

Predicate = Callable[[Mapping[str, Any]], bool]
_ValuePredicate = Callable[[Any], bool]

OPERATORS = tuple("$eq $ne $in $nin $gt $gte $lt $lte $exists $regex $and $or $not".split())
_DOCUMENT_OPERATORS = frozenset({"$and", "$or", "$not"})
_VALUE_OPERATORS = frozenset(OPERATORS) - {"$and", "$or"}

MAX_DEPTH = 10  # nested documents, operator objects and literal arrays/objects
MAX_REGEX_LENGTH = MAX_PATTERN_LENGTH
MAX_REGEX_SUBJECT_LENGTH = MAX_SUBJECT_LENGTH  # characters of an attribute a pattern is matched against
_CACHE_SIZE = 1024

_NUMBER_TYPES = (int, float)  # compared with ``type(x) in``: bool is an int subclass, not a number
_SCALAR_TYPES = (str, int, float, bool, type(None))
_BOOL_TAG = object()  # keeps True apart from 1 in $in sets, since True == 1 in Python


class ConditionError(ValueError):
    """A malformed condition document; ``path`` says where (``"$and[1].country.$in"``)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path or 'condition'}: {problem}")


def validate_condition(doc: Any) -> None:
    """Raise ``ConditionError`` naming the path and the problem if ``doc`` is not a valid condition."""
    _compile_document(doc, "", 1)


def compile_condition(doc: Any) -> Predicate:
    """Validate ``doc`` and turn it into a fast predicate over a unit's attributes.

    Do it once per configuration load (regexes are compiled here), then call the predicate per
    evaluation. Raises ``ConditionError`` for a malformed document; the predicate never raises and
    treats attributes that are not a mapping as no attributes.
    """
    predicate = _compile_document(doc, "", 1)

    def matches(attributes: Mapping[str, Any]) -> bool:
        if type(attributes) is not dict and not isinstance(attributes, Mapping):
            attributes = {}
        return predicate(attributes)

    return matches


_compiled: dict[str, Predicate] = {}


def evaluate_condition(doc: Any, attributes: Mapping[str, Any]) -> bool:
    """Whether ``attributes`` match ``doc``; raises ``ConditionError`` if ``doc`` is malformed.

    Compiled predicates are cached by the document's ``repr`` (exact for JSON values), so repeated
    calls with equal documents compile once. Hot paths should hold ``compile_condition``'s result.
    """
    key = repr(doc)
    predicate = _compiled.get(key)
    if predicate is None:
        predicate = compile_condition(doc)
        if len(_compiled) >= _CACHE_SIZE:
            _compiled.clear()
        _compiled[key] = predicate
    return predicate(attributes)


# --- compilation (validates as it goes, so whatever validates also compiles) ---------------------


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({_type_name(value)})"


def _check_depth(path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ConditionError(path, f"nested deeper than {MAX_DEPTH} levels")


def _always(_attributes: Mapping[str, Any]) -> bool:
    return True


def _all_of(predicates: list[Predicate]) -> Predicate:
    if not predicates:
        return _always
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda attributes: first(attributes) and second(attributes)
    if len(predicates) == 3:
        first, second, third = predicates
        return lambda attributes: first(attributes) and second(attributes) and third(attributes)
    frozen = tuple(predicates)

    def all_of(attributes: Any) -> bool:
        for predicate in frozen:
            if not predicate(attributes):
                return False
        return True

    return all_of


def _any_of(predicates: list[Predicate]) -> Predicate:
    if not predicates:  # GrowthBook: an empty $or matches everyone
        return _always
    if len(predicates) == 1:
        return predicates[0]
    frozen = tuple(predicates)

    def any_of(attributes: Any) -> bool:
        for predicate in frozen:
            if predicate(attributes):
                return True
        return False

    return any_of


def _compile_document(doc: Any, path: str, depth: int) -> Predicate:
    if not isinstance(doc, dict):
        raise ConditionError(path, f"a condition must be an object, got {_describe(doc)}")
    _check_depth(path, depth)
    clauses: list[Predicate] = []
    for key, value in doc.items():
        if not isinstance(key, str):
            raise ConditionError(path, f"keys must be strings, got {_describe(key)}")
        here = _join(path, key)
        if key.startswith("$"):
            clauses.append(_compile_logical(key, value, here, depth))
        else:
            clauses.append(_compile_field(key, value, here, depth))
    return _all_of(clauses)


def _compile_logical(operator: str, value: Any, path: str, depth: int) -> Predicate:
    if operator in ("$and", "$or"):
        if not isinstance(value, list):
            raise ConditionError(path, f"{operator} takes a list of conditions, got {_describe(value)}")
        predicates = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise ConditionError(
                    _join(path, index),
                    f"{operator} takes a list of conditions (objects), got {_describe(item)}",
                )
            predicates.append(_compile_document(item, _join(path, index), depth + 1))
        return _all_of(predicates) if operator == "$and" else _any_of(predicates)
    if operator == "$not":
        if not isinstance(value, dict):
            raise ConditionError(path, f"$not takes a condition (an object), got {_describe(value)}")
        inner = _compile_document(value, path, depth + 1)
        return lambda attributes: not inner(attributes)
    if operator in _VALUE_OPERATORS:
        raise ConditionError(
            path, f'{operator} must be applied to an attribute, e.g. {{"country": {{"{operator}": ...}}}}'
        )
    raise ConditionError(path, _unknown_operator(operator))


def _unknown_operator(operator: str) -> str:
    return f"unknown operator {operator}; supported: {', '.join(OPERATORS)}"


def _compile_field(attribute: str, value: Any, path: str, depth: int) -> Predicate:
    segments = attribute.split(".")
    if not all(segments):
        raise ConditionError(path, f"attribute path {attribute!r} has an empty segment")
    check = _compile_value(value, path, depth)
    if len(segments) == 1:
        return lambda attributes: check(attributes.get(attribute))
    parts = tuple(segments)

    def check_path(attributes: Mapping[str, Any]) -> bool:
        current: Any = attributes
        for part in parts:
            if type(current) is dict or isinstance(current, Mapping):
                current = current.get(part)
            else:
                return check(None)  # a missing path reads as null, as in GrowthBook
        return check(current)

    return check_path


def _is_operator_object(value: dict) -> bool:
    return bool(value) and all(isinstance(key, str) and key.startswith("$") for key in value)


def _compile_value(value: Any, path: str, depth: int) -> _ValuePredicate:
    """A predicate over one attribute value: an operator object, or a literal meaning ``$eq``."""
    if isinstance(value, dict) and any(isinstance(key, str) and key.startswith("$") for key in value):
        if not _is_operator_object(value):
            literal = [key for key in value if not (isinstance(key, str) and key.startswith("$"))]
            raise ConditionError(
                path,
                f"mixes operators and plain keys ({', '.join(map(repr, literal))}); use a dotted "
                'attribute path such as "user.country" for nested attributes',
            )
        _check_depth(path, depth + 1)
        checks = [_compile_operator(op, arg, _join(path, op), depth + 1) for op, arg in value.items()]
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:
            first, second = checks
            return lambda actual: first(actual) and second(actual)
        frozen = tuple(checks)
        return lambda actual: all(check(actual) for check in frozen)
    _check_literal(value, path, depth)
    return _equals(value)


def _compile_operator(operator: str, arg: Any, path: str, depth: int) -> _ValuePredicate:
    if operator == "$eq":
        _check_literal(arg, path, depth)
        return _equals(arg)
    if operator == "$ne":
        _check_literal(arg, path, depth)
        equals = _equals(arg)
        return lambda actual: not equals(actual)
    if operator in ("$in", "$nin"):
        is_in = _membership(operator, arg, path)
        if operator == "$in":
            return is_in
        return lambda actual: not is_in(actual)
    if operator in ("$gt", "$gte", "$lt", "$lte"):
        return _ordering(operator, arg, path)
    if operator == "$exists":
        if type(arg) is not bool:
            raise ConditionError(path, f"$exists takes true or false, got {_describe(arg)}")
        if arg:
            return lambda actual: actual is not None
        return lambda actual: actual is None
    if operator == "$regex":
        return _regex(arg, path)
    if operator == "$not":
        if not isinstance(arg, dict) or not _is_operator_object(arg):
            raise ConditionError(
                path,
                '$not under an attribute takes an operator object such as {"$in": [...]}, '
                f"got {_describe(arg)}",
            )
        inner = _compile_value(arg, path, depth)
        return lambda actual: not inner(actual)
    if operator in _DOCUMENT_OPERATORS:
        raise ConditionError(
            path, f"{operator} combines whole conditions: use it at the top level, not under an attribute"
        )
    raise ConditionError(path, _unknown_operator(operator))


def _check_literal(value: Any, path: str, depth: int) -> None:
    """A literal must be a JSON value, and must not hide operators inside objects."""
    if isinstance(value, _SCALAR_TYPES):
        if type(value) is float and not math.isfinite(value):
            raise ConditionError(path, f"numbers must be finite, got {value!r}")
        return
    _check_depth(path, depth + 1)
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_literal(item, _join(path, index), depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConditionError(path, f"object keys must be strings, got {_describe(key)}")
            if key.startswith("$"):
                raise ConditionError(
                    _join(path, key),
                    f"operator {key} inside a literal object; use a dotted attribute path such as "
                    '"user.country" to test nested attributes',
                )
            _check_literal(item, _join(path, key), depth + 1)
        return
    raise ConditionError(path, f"not a JSON value: {_describe(value)}")


# --- value predicates -----------------------------------------------------------------------------


def _json_equal(actual: Any, expected: Any) -> bool:
    """Deep equality of JSON values without Python's ``True == 1`` (``expected`` is a checked literal)."""
    if expected is None or type(expected) is bool:
        return actual is expected
    if type(expected) in _NUMBER_TYPES:
        return type(actual) in _NUMBER_TYPES and actual == expected
    if type(expected) is str:
        return isinstance(actual, str) and actual == expected
    if type(expected) is list:
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(_json_equal(a, e) for a, e in zip(actual, expected, strict=True))
        )
    # A checked literal that is not a scalar or a list is a dict.
    return (
        isinstance(actual, Mapping)
        and len(actual) == len(expected)
        and all(key in actual and _json_equal(actual[key], item) for key, item in expected.items())
    )


def _equals(expected: Any) -> _ValuePredicate:
    if expected is None:
        return lambda actual: actual is None
    if type(expected) is bool:
        return lambda actual: actual is expected
    if type(expected) is str:
        return lambda actual: isinstance(actual, str) and actual == expected
    if type(expected) in _NUMBER_TYPES:
        return lambda actual: type(actual) in _NUMBER_TYPES and actual == expected
    return lambda actual: _json_equal(actual, expected)


def _membership_key(value: Any) -> Any:
    return (_BOOL_TAG, value) if type(value) is bool else value


def _membership(operator: str, arg: Any, path: str) -> _ValuePredicate:
    if not isinstance(arg, list):
        raise ConditionError(path, f"{operator} takes a list of values, got {_describe(arg)}")
    for index, item in enumerate(arg):
        if not isinstance(item, _SCALAR_TYPES):
            raise ConditionError(
                _join(path, index),
                f"{operator} values must be strings, numbers, booleans or null, got {_describe(item)}",
            )
        if type(item) is float and not math.isfinite(item):
            raise ConditionError(_join(path, index), f"numbers must be finite, got {item!r}")
    keys = frozenset(_membership_key(item) for item in arg)

    def one(value: Any) -> bool:
        kind = type(value)
        if kind is str or kind is int or kind is float or value is None:
            return value in keys
        if kind is bool:
            return (_BOOL_TAG, value) in keys
        if isinstance(value, str):  # a str subclass
            return str(value) in keys
        return False

    def is_in(actual: Any) -> bool:
        if type(actual) is str:
            return actual in keys
        if isinstance(actual, list | tuple):  # an array attribute: do the two share an element?
            return any(one(item) for item in actual)
        return one(actual)

    return is_in


def _ordering(operator: str, arg: Any, path: str) -> _ValuePredicate:
    if type(arg) in _NUMBER_TYPES:
        if type(arg) is float and not math.isfinite(arg):
            raise ConditionError(path, f"{operator} takes a finite number, got {arg!r}")
        if operator == "$gt":
            return lambda actual: type(actual) in _NUMBER_TYPES and actual > arg
        if operator == "$gte":
            return lambda actual: type(actual) in _NUMBER_TYPES and actual >= arg
        if operator == "$lt":
            return lambda actual: type(actual) in _NUMBER_TYPES and actual < arg
        return lambda actual: type(actual) in _NUMBER_TYPES and actual <= arg
    if isinstance(arg, str):
        if operator == "$gt":
            return lambda actual: isinstance(actual, str) and actual > arg
        if operator == "$gte":
            return lambda actual: isinstance(actual, str) and actual >= arg
        if operator == "$lt":
            return lambda actual: isinstance(actual, str) and actual < arg
        return lambda actual: isinstance(actual, str) and actual <= arg
    raise ConditionError(path, f"{operator} takes a number or a string, got {_describe(arg)}")


def _regex(arg: Any, path: str) -> _ValuePredicate:
    if not isinstance(arg, str):
        raise ConditionError(path, f"$regex takes a pattern string, got {_describe(arg)}")
    try:
        search = regex_compile(arg)
    except RegexError as error:
        raise ConditionError(path, str(error)) from None
    return lambda actual: isinstance(actual, str) and search(actual)
