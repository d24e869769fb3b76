"""Targeting conditions: GrowthBook's MongoDB-style documents over a unit's attributes.

One evaluator shared by experiment targeting and feature rules. Pure functions, no I/O.

A condition document maps attribute paths to expected values or operator objects, plus the
logical operators ``$and``, ``$or``, ``$nor`` (lists of documents) and ``$not`` (a document). Every
clause must hold; ``{}`` matches everyone::

    {"country": {"$in": ["US", "CA"]}, "plan": "pro", "age": {"$gte": 18, "$lt": 65}}
    {"$or": [{"plan": "pro"}, {"user.beta": True}], "$not": {"country": "FR"}}

Semantics are GrowthBook's ``evalCondition`` as its reference implementation (the JavaScript SDK)
computes it, so every one of the 248 ``evalCondition`` cases of GrowthBook's conformance suite passes
(``tests/conformance/test_growthbook_cases.py``). Attributes are JSON values; where types mix, values
are converted as JavaScript does (``ToNumber``, ``ToString``):

- Paths: ``"user.country"`` walks into nested objects (and into arrays: ``"tags.0"``,
  ``"tags.length"``); a missing attribute or path reads as ``null``.
- A literal value compares by the literal's type: a string literal matches an attribute whose
  string form is equal (``{"n": "5"}`` matches ``5``; ``{"c": "null"}`` matches a missing ``c``); a
  number literal one whose numeric value is equal (``{"n": 0}`` matches ``"0"``, ``false`` and a
  missing ``n``); ``true``/``false`` an attribute that is not null and truthy/falsy (``0``, ``""`` and
  ``false`` are falsy); ``null`` only null or missing; an array or object literal the same JSON
  (arrays in order, object keys in the same order).
- ``$eq``/``$ne``: strict equality of strings, numbers, booleans and null (no conversion; ``1 ==
  1.0``). GrowthBook's JavaScript compares arrays and objects by identity, so ``$eq`` with one never
  matches: saving one is refused (use a literal).
- ``$gt $gte $lt $lte``: JavaScript's relational comparison: two strings compare by UTF-16 code units
  (ISO 8601 dates compare as dates); otherwise both sides become numbers (null is 0, true 1,
  ``"8"`` 8, a non-numeric string NaN) and NaN matches nothing. A missing attribute is 0 there:
  ``{"age": {"$lt": 10}}`` matches a unit without ``age``; add ``"$exists": true`` to require it.
- ``$in``/``$nin`` (and case-insensitive ``$ini``/``$nini``): a list of strings, numbers, booleans or
  null, strictly compared; against an array attribute, whether the two share an element.
- ``$all``/``$alli``: an array attribute with, for each listed value, an element equal to it (as a
  literal); ``$elemMatch``: an array attribute with an element (not null, false, 0 or "") matching an
  operator object or a condition document; ``$size``: an array attribute whose length matches a number
  or an operator object.
- ``$exists``: true for an attribute that is present and not null; false for a missing or null one.
- ``$type``: one of ``string number boolean array object null``.
- ``$regex``/``$regexi`` (case-insensitive): an RE2 pattern searched anywhere in the attribute's string
  form, in time linear in the string (``experiments.regex``: RE2 syntax, no backreferences or
  lookarounds, refused when saved). A string form longer than ``MAX_REGEX_SUBJECT_LENGTH`` (1024)
  characters does not match.
- ``$veq $vne $vgt $vgte $vlt $vlte``: version strings (``v1.2.3``, ``1.0.0-beta.2``) compared after
  GrowthBook's ``paddedVersionString`` (``padded_version``).
- ``$not`` under an attribute negates an operator object; ``$and: []`` and ``$or: []`` match everyone,
  ``$nor: []`` and ``$in: []`` no one.
- A key starting with ``$`` that is not a logical operator names an attribute (GrowthBook's
  ``$groups``), except a value operator such as ``$in``, which is refused at the top level.

Where GrowthBook's Python SDK 4.0.0 differs: it never converts types (a missing attribute fails
``$lt``, ``"8"`` fails ``{"$gt": 5}``, ``{"n": "5"}`` does not match ``5`` and ``{"flag": true}`` does
not match ``1``), and it runs ``$regex`` with Python's ``re``.

Two ways to compile, one semantics:

- strict (``validate_condition``, and ``compile_condition`` by default): a document the specification
  would evaluate but that cannot be meant -- an unknown operator, ``$in`` without a list, a pattern RE2
  cannot run, ``$eq`` with an array, nesting deeper than ``MAX_DEPTH`` (10) -- raises ``ConditionError``
  naming the path, so it is refused when saved;
- lenient (``compile_condition(doc, strict=False)``, used when a stored configuration is loaded): the
  specification's answer for such parts, which is "no match" (an unknown operator, a pattern that
  cannot compile); it never raises.

Evaluation never raises. Use ``validate_condition`` when a condition is saved, ``compile_condition``
once per configuration load to get a fast predicate, and ``evaluate_condition`` for one-off checks.
"""

from __future__ import annotations

import math
import re
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
    "padded_version",
    "validate_condition",
]

Predicate = Callable[[Mapping[str, Any]], bool]
_ValuePredicate = Callable[[Any], bool]

_LOGICAL_OPERATORS = ("$and", "$or", "$nor", "$not")
_VALUE_OPERATORS = tuple(
    "$eq $ne $gt $gte $lt $lte $in $nin $ini $nini $all $alli $elemMatch $size $exists $type "
    "$regex $regexi $veq $vne $vgt $vgte $vlt $vlte $not $inGroup $notInGroup".split()
)
OPERATORS = _LOGICAL_OPERATORS + _VALUE_OPERATORS
TYPE_NAMES = ("string", "number", "boolean", "array", "object", "null")

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
    _Compiler(strict=True, saved_groups=None).document(doc, "", 1)


def compile_condition(
    doc: Any, *, strict: bool = True, saved_groups: Mapping[str, Any] | None = None
) -> Predicate:
    """Turn ``doc`` into a fast predicate over a unit's attributes (module docstring).

    Do it once per configuration load (regexes are compiled here), then call the predicate per
    evaluation. ``strict`` raises ``ConditionError`` for a malformed document; lenient compilation
    gives the specification's answer instead and never raises. ``saved_groups`` maps a saved group id
    to its members, for ``$inGroup``/``$notInGroup`` (refused when strict without it). The predicate
    never raises and treats attributes that are not a mapping as no attributes.
    """
    predicate = _Compiler(strict=strict, saved_groups=saved_groups).document(doc, "", 1)

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


# --- JavaScript value semantics (ECMA-262 ToString, ToNumber, relational comparison) ----------------

# WhiteSpace and LineTerminator code points that Number("...") trims.
_JS_SPACE = "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # noqa: E501
# Unambiguous, so matching is linear in the string's length.
_JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_JS_RADIX = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")


def _js_number_text(x: float) -> str:
    """ECMA-262 Number::toString: shortest round-trip digits, exponent form outside 1e-7..1e21."""
    if type(x) is int:
        if abs(x) < 10**21:
            return str(x)
        try:
            x = float(x)
        except OverflowError:
            return "Infinity" if x > 0 else "-Infinity"
    if x != x:
        return "NaN"
    if x in (math.inf, -math.inf):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    # repr gives the shortest digits that round-trip, as JavaScript does; re-place the decimal point.
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + int(exponent or 0)  # the value is 0.digits * 10**point
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e >= 0 else "e-") + str(abs(e))
    return sign + text


def _js_string(value: Any) -> str:
    """JavaScript's ``String(value)`` for a JSON value (arrays joined by commas)."""
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return _js_number_text(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join("" if item is None else _js_string(item) for item in value)
    return "[object Object]"


def _js_string_number(text: str) -> float:
    text = text.strip(_JS_SPACE)
    if not text:
        return 0.0
    if _JS_DECIMAL.fullmatch(text):
        return float(text)
    if _JS_RADIX.fullmatch(text):
        return float(int(text, 0))
    return math.nan


def _js_number(value: Any) -> float:
    """JavaScript's ``Number(value)`` for a JSON value."""
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if value is None:
        return 0.0
    if kind is bool:
        return 1.0 if value else 0.0
    if isinstance(value, str | list | tuple):
        return _js_string_number(_js_string(value))
    return math.nan


def _js_primitive(value: Any) -> Any:
    """ToPrimitive: arrays and objects become their string form; scalars stay."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return _js_string(value)


def _utf16_order(a: str, b: str) -> int:
    if a.isascii() and b.isascii():
        return (a > b) - (a < b)
    ka, kb = a.encode("utf-16-be", "surrogatepass"), b.encode("utf-16-be", "surrogatepass")
    return (ka > kb) - (ka < kb)


def _js_compare(actual: Any, expected: Any) -> int | None:
    """-1, 0 or 1 as JavaScript's ``<``/``>`` order them, or ``None`` when either is NaN (no order)."""
    a, b = _js_primitive(actual), _js_primitive(expected)
    if type(a) is str and type(b) is str:
        return _utf16_order(a, b)
    x, y = _js_number(a), _js_number(b)
    if x != x or y != y:
        return None
    return (x > y) - (x < y)


def _js_truthy(value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if type(value) in _NUMBER_TYPES:
        return value == value and value != 0
    return True


def _js_key_order(keys: list[str]) -> list[str]:
    """Property order of a JavaScript object: array-index keys ascending first, then insertion order."""
    indexes = sorted((k for k in keys if _is_array_index(k)), key=int)
    return indexes + [k for k in keys if not _is_array_index(k)]


def _is_array_index(key: str) -> bool:
    return key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


def _json_equal(actual: Any, expected: Any) -> bool:
    """``JSON.stringify(actual) === JSON.stringify(expected)`` for JSON values."""
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
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        keys = _js_key_order(list(expected))
        return keys == _js_key_order(list(actual)) and all(_json_equal(actual[k], expected[k]) for k in keys)
    return False


def _type_of(value: Any) -> str:
    """GrowthBook's ``getType``."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str or isinstance(value, str):
        return "string"
    if kind is bool:
        return "boolean"
    if kind is int or kind is float:
        return "number"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "unknown"


def padded_version(value: Any) -> str:
    """GrowthBook's ``paddedVersionString``: a version as a string that compares as the version.

    Numbers become their string form and anything else that is not a non-empty string ``"0"``; a leading
    ``v`` and build metadata (``+...``) are dropped; the rest splits on ``.`` and ``-``; a plain
    ``x.y.z`` gets a ``~`` part (so it sorts after its pre-releases); digit-only parts are left-padded
    with spaces to 5 characters; the parts are joined with ``-``.
    """
    if type(value) in _NUMBER_TYPES:
        value = _js_number_text(value)
    if not value or not isinstance(value, str):
        value = "0"
    if value.startswith("v"):
        value = value[1:]
    # JavaScript's /\+.*$/ removes from the first "+" that no line terminator follows.
    last_break = max(value.rfind(c) for c in "\n\r\u2028\u2029")
    plus = value.find("+", last_break + 1)
    if plus >= 0:
        value = value[:plus]
    parts = re.split(r"[-.]", value)
    if len(parts) == 3:
        parts.append("~")
    return "-".join(p.rjust(5) if p.isascii() and p.isdigit() else p for p in parts)


# --- compilation (validates as it goes when strict) -------------------------------------------------


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


def _always(_value: Any) -> bool:
    return True


def _never(_value: Any) -> bool:
    return False


def _all_of(predicates: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if not predicates:
        return _always
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda value: first(value) and second(value)
    if len(predicates) == 3:
        first, second, third = predicates
        return lambda value: first(value) and second(value) and third(value)
    frozen = tuple(predicates)

    def all_of(value: Any) -> bool:
        for predicate in frozen:
            if not predicate(value):
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


def _is_operator_object(value: Any) -> bool:
    """GrowthBook's ``isOperatorObject``: a non-empty object whose keys all start with ``$``."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and k.startswith("$") for k in value)
    )


def _read_path(attributes: Any, parts: tuple[str, ...]) -> Any:
    """GrowthBook's ``getPath``: objects by key, arrays by index or ``length``; missing is null."""
    current = attributes
    for part in parts:
        if isinstance(current, Mapping):
            if part not in current:
                return None
            current = current[part]
        elif isinstance(current, list | tuple):
            if part == "length":
                current = len(current)
            elif _is_array_index(part) and int(part) < len(current):
                current = current[int(part)]
            else:
                return None
        else:
            return None
    return current


def _equals_literal(expected: Any, *, insensitive: bool = False) -> _ValuePredicate:
    """An attribute against a literal value, as GrowthBook's JavaScript ``evalConditionValue``."""
    if type(expected) is str:
        if insensitive:
            folded = expected.lower()
            return lambda actual: _js_string(actual).lower() == folded
        return lambda actual: actual == expected if type(actual) is str else _js_string(actual) == expected
    if type(expected) in _NUMBER_TYPES:

        def equals_number(actual: Any) -> bool:
            kind = type(actual)
            if kind is int or kind is float:
                return actual == expected
            return _js_number(actual) == expected

        return equals_number
    if type(expected) is bool:
        if expected:
            return lambda actual: actual is not None and _js_truthy(actual)
        return lambda actual: actual is not None and not _js_truthy(actual)
    if expected is None:
        return lambda actual: actual is None
    return lambda actual: _json_equal(actual, expected)


def _strict_equals(expected: Any) -> _ValuePredicate:
    """JavaScript's ``===`` against a literal: arrays and objects are never identical to it."""
    if expected is None:
        return lambda actual: actual is None
    if type(expected) is bool:
        return lambda actual: actual is expected
    if type(expected) is str:
        return lambda actual: isinstance(actual, str) and actual == expected
    if type(expected) in _NUMBER_TYPES:
        return lambda actual: type(actual) in _NUMBER_TYPES and actual == expected
    return _never


def _membership_key(value: Any, insensitive: bool) -> Any:
    if type(value) is bool:
        return (_BOOL_TAG, value)
    if insensitive and isinstance(value, str):
        return value.lower()
    return value


def _membership(members: list, *, insensitive: bool = False) -> _ValuePredicate:
    """GrowthBook's ``isIn``: strict membership, or a shared element for an array attribute."""
    # Arrays and objects in the list can only be identical to themselves in JavaScript: never here.
    keys = frozenset(
        _membership_key(item, insensitive)
        for item in members
        if isinstance(item, _SCALAR_TYPES) and not (type(item) is float and item != item)
    )

    def one(value: Any) -> bool:
        kind = type(value)
        if kind is str:
            return (value.lower() if insensitive else value) in keys
        if kind is int or kind is float or value is None:
            return value in keys
        if kind is bool:
            return (_BOOL_TAG, value) in keys
        if isinstance(value, str):  # a str subclass
            return _membership_key(str(value), insensitive) in keys
        return False

    def is_in(actual: Any) -> bool:
        if type(actual) is str and not insensitive:
            return actual in keys
        if isinstance(actual, list | tuple):  # an array attribute: do the two share an element?
            return any(one(item) for item in actual)
        return one(actual)

    return is_in


class _Compiler:
    """Compiles a document into closures; raises ``ConditionError`` when ``strict``."""

    def __init__(self, *, strict: bool, saved_groups: Mapping[str, Any] | None) -> None:
        self.strict = strict
        self.saved_groups = saved_groups

    def refuse(self, path: str, problem: str) -> Callable[[Any], bool]:
        """Strict: raise. Lenient: the part matches nobody, as GrowthBook's SDKs answer for it."""
        if self.strict:
            raise ConditionError(path, problem)
        return _never

    def depth_exceeded(self, path: str, depth: int) -> bool:
        if depth > MAX_DEPTH:
            self.refuse(path, f"nested deeper than {MAX_DEPTH} levels")
            return True
        return False

    # documents ----------------------------------------------------------------------------------------

    def document(self, doc: Any, path: str, depth: int) -> Predicate:
        if not isinstance(doc, dict):
            return self.refuse(path, f"a condition must be an object, got {_describe(doc)}")
        if self.depth_exceeded(path, depth):
            return _never
        clauses: list[Predicate] = []
        for key, value in doc.items():
            if not isinstance(key, str):
                clauses.append(self.refuse(path, f"keys must be strings, got {_describe(key)}"))
                continue
            here = _join(path, key)
            if key in _LOGICAL_OPERATORS:
                clauses.append(self.logical(key, value, here, depth))
            elif key in _VALUE_OPERATORS:
                clauses.append(
                    self.refuse(
                        here,
                        f'{key} must be applied to an attribute, e.g. {{"country": {{"{key}": ...}}}}',
                    )
                )
            else:
                clauses.append(self.field(key, value, here, depth))
        return _all_of(clauses)

    def logical(self, operator: str, value: Any, path: str, depth: int) -> Predicate:
        if operator == "$not":
            if not isinstance(value, dict):
                return self.refuse(path, f"$not takes a condition (an object), got {_describe(value)}")
            inner = self.document(value, path, depth + 1)
            return lambda attributes: not inner(attributes)
        if not isinstance(value, list):
            return self.refuse(path, f"{operator} takes a list of conditions, got {_describe(value)}")
        predicates = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                predicates.append(
                    self.refuse(
                        _join(path, index),
                        f"{operator} takes a list of conditions (objects), got {_describe(item)}",
                    )
                )
                continue
            predicates.append(self.document(item, _join(path, index), depth + 1))
        if operator == "$and":
            return _all_of(predicates)
        any_of = _any_of(predicates)
        if operator == "$or":
            return any_of
        if not predicates:  # GrowthBook's $nor is "not $or", and an empty $or matches everyone
            return _never
        return lambda attributes: not any_of(attributes)

    def field(self, attribute: str, value: Any, path: str, depth: int) -> Predicate:
        segments = attribute.split(".")
        if self.strict and not all(segments):
            raise ConditionError(path, f"attribute path {attribute!r} has an empty segment")
        check = self.value(value, path, depth)
        if len(segments) == 1:

            def check_attribute(attributes: Any) -> bool:
                if type(attributes) is dict:
                    return check(attributes.get(attribute))
                return check(_read_path(attributes, (attribute,)))

            return check_attribute
        parts = tuple(segments)
        return lambda attributes: check(_read_path(attributes, parts))

    # values -------------------------------------------------------------------------------------------

    def value(self, value: Any, path: str, depth: int, *, insensitive: bool = False) -> _ValuePredicate:
        """A predicate over one attribute value: an operator object, or a literal."""
        if isinstance(value, dict) and any(isinstance(key, str) and key.startswith("$") for key in value):
            if not _is_operator_object(value):
                if self.strict:
                    literal = [key for key in value if not (isinstance(key, str) and key.startswith("$"))]
                    raise ConditionError(
                        path,
                        f"mixes operators and plain keys ({', '.join(map(repr, literal))}); use a dotted "
                        'attribute path such as "user.country" for nested attributes',
                    )
                return _equals_literal(value)
            if self.depth_exceeded(path, depth + 1):
                return _never
            return _all_of([self.operator(op, arg, _join(path, op), depth + 1) for op, arg in value.items()])
        if self.strict:
            self.check_literal(value, path, depth)
        return _equals_literal(value, insensitive=insensitive)

    def check_literal(self, value: Any, path: str, depth: int) -> None:
        """A literal must be a JSON value, and must not hide operators inside objects."""
        if isinstance(value, _SCALAR_TYPES):
            if type(value) is float and not math.isfinite(value):
                raise ConditionError(path, f"numbers must be finite, got {value!r}")
            return
        if depth + 1 > MAX_DEPTH:
            raise ConditionError(path, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            for index, item in enumerate(value):
                self.check_literal(item, _join(path, index), depth + 1)
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
                self.check_literal(item, _join(path, key), depth + 1)
            return
        raise ConditionError(path, f"not a JSON value: {_describe(value)}")

    def scalar_list(self, operator: str, arg: Any, path: str) -> list | None:
        """The list argument of ``$in``-like operators, checked when strict; ``None`` when not a list."""
        if not isinstance(arg, list):
            self.refuse(path, f"{operator} takes a list of values, got {_describe(arg)}")
            return None
        if self.strict:
            for index, item in enumerate(arg):
                if not isinstance(item, _SCALAR_TYPES):
                    raise ConditionError(
                        _join(path, index),
                        f"{operator} values must be strings, numbers, booleans or null, got {_describe(item)}",
                    )
                if type(item) is float and not math.isfinite(item):
                    raise ConditionError(_join(path, index), f"numbers must be finite, got {item!r}")
        return arg

    def operator(self, operator: str, arg: Any, path: str, depth: int) -> _ValuePredicate:  # noqa: C901, PLR0911, PLR0912
        if operator in ("$eq", "$ne"):
            if self.strict:
                if isinstance(arg, list | dict):
                    raise ConditionError(
                        path,
                        f"{operator} compares strings, numbers, booleans or null; GrowthBook's SDKs never "
                        "find an array or object equal to it: write the literal value instead",
                    )
                self.check_literal(arg, path, depth)
            equals = _strict_equals(arg)
            if operator == "$eq":
                return equals
            return lambda actual: not equals(actual)
        if operator in ("$gt", "$gte", "$lt", "$lte"):
            return self.ordering(operator, arg, path)
        if operator in ("$in", "$nin", "$ini", "$nini"):
            members = self.scalar_list(operator, arg, path)
            if members is None:
                return _never
            is_in = _membership(members, insensitive=operator in ("$ini", "$nini"))
            if operator in ("$in", "$ini"):
                return is_in
            return lambda actual: not is_in(actual)
        if operator in ("$all", "$alli"):
            if not isinstance(arg, list):
                return self.refuse(path, f"{operator} takes a list of values, got {_describe(arg)}")
            insensitive = operator == "$alli"
            wanted = tuple(
                self.value(item, _join(path, index), depth, insensitive=insensitive)
                for index, item in enumerate(arg)
            )
            return lambda actual: (
                isinstance(actual, list | tuple)
                and all(any(check(item) for item in actual) for check in wanted)
            )
        if operator == "$elemMatch":
            return self.elem_match(arg, path, depth)
        if operator == "$size":
            if self.strict and not (type(arg) in _NUMBER_TYPES or _is_operator_object(arg)):
                raise ConditionError(
                    path,
                    f'$size takes a number or an operator object such as {{"$gt": 2}}, got {_describe(arg)}',
                )
            size = self.value(arg, path, depth)
            return lambda actual: isinstance(actual, list | tuple) and size(len(actual))
        if operator == "$exists":
            if self.strict and type(arg) is not bool:
                raise ConditionError(path, f"$exists takes true or false, got {_describe(arg)}")
            if _js_truthy(arg):
                return lambda actual: actual is not None
            return lambda actual: actual is None
        if operator == "$type":
            if self.strict and arg not in TYPE_NAMES:
                raise ConditionError(
                    path, f"$type takes one of {', '.join(TYPE_NAMES)}, got {_describe(arg)}"
                )
            return lambda actual: _type_of(actual) == arg
        if operator in ("$regex", "$regexi"):
            return self.regex(operator, arg, path)
        if operator in ("$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte"):
            return self.version(operator, arg, path)
        if operator == "$not":
            if self.strict and not _is_operator_object(arg):
                raise ConditionError(
                    path,
                    '$not under an attribute takes an operator object such as {"$in": [...]}, '
                    f"got {_describe(arg)}",
                )
            inner = self.value(arg, path, depth)
            return lambda actual: not inner(actual)
        if operator in ("$inGroup", "$notInGroup"):
            return self.group(operator, arg, path)
        if operator in _LOGICAL_OPERATORS:
            return self.refuse(
                path, f"{operator} combines whole conditions: use it at the top level, not under an attribute"
            )
        return self.refuse(path, f"unknown operator {operator}; supported: {', '.join(OPERATORS)}")

    def ordering(self, operator: str, arg: Any, path: str) -> _ValuePredicate:
        if self.strict:
            if type(arg) not in (*_NUMBER_TYPES, str):
                raise ConditionError(path, f"{operator} takes a number or a string, got {_describe(arg)}")
            if type(arg) is float and not math.isfinite(arg):
                raise ConditionError(path, f"{operator} takes a finite number, got {arg!r}")
        accepted = {"$gt": (1,), "$gte": (0, 1), "$lt": (-1,), "$lte": (-1, 0)}[operator]
        if type(arg) in _NUMBER_TYPES:
            # The common case, number against number, without the general conversion.
            if operator == "$gt":
                fast = lambda actual: actual > arg  # noqa: E731
            elif operator == "$gte":
                fast = lambda actual: actual >= arg  # noqa: E731
            elif operator == "$lt":
                fast = lambda actual: actual < arg  # noqa: E731
            else:
                fast = lambda actual: actual <= arg  # noqa: E731

            def compare_number(actual: Any) -> bool:
                kind = type(actual)
                if kind is int or kind is float:
                    return fast(actual)
                return _js_compare(actual, arg) in accepted

            return compare_number
        return lambda actual: _js_compare(actual, arg) in accepted

    def elem_match(self, arg: Any, path: str, depth: int) -> _ValuePredicate:
        if not isinstance(arg, dict):
            return self.refuse(
                path, f"$elemMatch takes an operator object or a condition (an object), got {_describe(arg)}"
            )
        if _is_operator_object(arg):
            check = self.value(arg, path, depth)
        else:
            check = self.document(arg, path, depth + 1)  # each element read as attributes

        # GrowthBook's JavaScript skips falsy elements (null, false, 0, "").
        return lambda actual: (
            isinstance(actual, list | tuple) and any(_js_truthy(item) and check(item) for item in actual)
        )

    def regex(self, operator: str, arg: Any, path: str) -> _ValuePredicate:
        if not isinstance(arg, str):
            return self.refuse(path, f"{operator} takes a pattern string, got {_describe(arg)}")
        try:
            search = regex_compile(arg, ignore_case=operator == "$regexi")
        except RegexError as error:
            # GrowthBook's SDKs: a pattern that cannot compile matches nothing.
            return self.refuse(path, str(error))
        return lambda actual: search(actual) if type(actual) is str else search(_js_string(actual))

    def version(self, operator: str, arg: Any, path: str) -> _ValuePredicate:
        if self.strict and not isinstance(arg, str):
            raise ConditionError(
                path, f'{operator} takes a version string such as "1.2.3", got {_describe(arg)}'
            )
        expected = padded_version(arg)
        accepted = {
            "$veq": (0,),
            "$vne": (-1, 1),
            "$vgt": (1,),
            "$vgte": (0, 1),
            "$vlt": (-1,),
            "$vlte": (-1, 0),
        }[operator]
        return lambda actual: _utf16_order(padded_version(actual), expected) in accepted

    def group(self, operator: str, arg: Any, path: str) -> _ValuePredicate:
        if self.saved_groups is None and self.strict:
            raise ConditionError(path, f"{operator} needs saved groups, which this platform does not define")
        groups = self.saved_groups or {}  # GrowthBook: no saved groups is an empty set of them
        if self.strict and (not isinstance(arg, str) or arg not in groups):
            raise ConditionError(path, f"{operator}: unknown saved group {_describe(arg)}")
        members = groups.get(arg) if isinstance(arg, str) else None
        is_in = _membership(members if isinstance(members, list) else [])
        if operator == "$inGroup":
            return is_in
        return lambda actual: not is_in(actual)
