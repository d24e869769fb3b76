"""Deterministic bucketing, GrowthBook's: which unit sees which variant, rollout and layer slice.

Pure functions over plain data (no ORM, no I/O): they run on every assignment and flag evaluation.
They follow GrowthBook's SDK specification ("Build your own SDK": ``hash``, ``getBucketRanges``,
``chooseVariation``, ``inNamespace``, ``isIncludedInRollout``) so that a unit lands in the same
variant whether our server or one of GrowthBook's SDKs decides, and every case of its conformance
suite for these functions passes (``tests/conformance/test_growthbook_cases.py``).

Hash (``bucket``)
=================
``fnv1a32(text)`` is 32-bit FNV-1a over the UTF-16 code units of ``text`` (as JavaScript's
``charCodeAt``): start from ``h = 2166136261``; for each code unit ``c``: ``h = (h XOR c) * 16777619
mod 2**32``. Each code unit is XORed whole (it is not a byte-wise FNV over UTF-8): ASCII text gives
the textbook FNV-1a values.

A unit's bucket for a seed is a number in [0, 1):

- version 2 (every experiment and rollout rule here):
  ``n = fnv1a32(decimal(fnv1a32(seed + unit_id)))``, ``bucket = (n mod 10000) / 10000`` --
  ``seed + unit_id`` is plain concatenation, ``decimal(x)`` the base-10 digits of the 32-bit integer
  (``"2166136261"``), and the division is IEEE 754 double division;
- version 1 (GrowthBook's original, used for namespaces only): ``n = fnv1a32(unit_id + seed)``,
  ``bucket = (n mod 1000) / 1000``.

So version 2 buckets are multiples of 1/10000 and version 1 buckets multiples of 1/1000 (a slice
narrower than 0.001 of a layer holds nobody). Any other version gives ``None``.

Test vectors (also asserted in ``tests/experiments/test_bucketing.py``)::

    bucket("checkout-button", "user-1", 2)      == 0.5603
    bucket("", "", 2)                           == 0.2305
    bucket("__homepage", "ünïcødé-42 😀", 1)    == 0.124
    bucket("a", "b", 1)                         == 0.708

Characters outside the Basic Multilingual Plane (emoji) are two UTF-16 code units, as in JavaScript;
GrowthBook's Python SDK 4.0.0 hashes code points instead, so for unit ids or seeds with such characters
it disagrees with its JavaScript SDK and with us. A lone surrogate (possible in JSON) is one code unit.

Seeds
=====
- An experiment's variant: ``bucket(seed, unit_id, 2)`` where ``seed`` is the experiment's hash seed
  (stored on the experiment; it never changes while the experiment runs), or its key when the seed is
  empty.
- A feature rollout rule: ``bucket(feature_key, unit_id, 2)`` (GrowthBook's default rule seed is the
  feature key). An experiment whose seed equals a feature key buckets units exactly as that feature's
  rollouts do; give one of them another seed when both run on the same units.
- A layer: GrowthBook's namespace ``[layer_key, start, end]``, hashed ``bucket("__" + layer_key,
  unit_id, 1)`` (``in_namespace``). The layer key is free text, used as stored.

Hash attribute (``unit_hash``)
=============================
The text hashed for a unit (``unit_id`` above) is the value of the experiment's or rollout rule's
*hash attribute*: ``id`` (the default) is the unit id; any other name is read from the unit's
attributes (top level only: a name is never a dotted path). As in GrowthBook's SDKs, only a non-empty
string or a finite, non-zero number identifies a unit (``hash_text``); a number is hashed as
JavaScript's ``String(number)`` writes it (``42``, ``1.5``, ``1e+21``). When the hash attribute gives
nothing, the *fallback attribute* is tried the same way; when neither does, the unit is in no
experiment and no rollout that hashes on them.

Variant ranges (``bucket_ranges``, ``choose_variation``)
========================================================
Weights are normalised to sum to 1 (``variant_ranges``) and coverage is the experiment's traffic
allocation. Variant ``i`` owns ``[start_i, start_i + coverage * w_i)`` where ``start_i = w_0 + ... +
w_(i-1)`` is summed left to right in doubles; a unit is in variant ``i`` when its bucket is in that
range (the first such ``i``), and in no variant otherwise. Raising coverage grows every range from
its own start, so a unit that was in stays in the same variant.

Layers
======
Experiments sharing a layer key never share a unit: each owns a slice ``[start, start + width)`` of
the layer with ``width = traffic_allocation``, published as GrowthBook's namespace ``[layer, start,
end]``, and a unit is in the slice when ``start <= bucket("__" + layer, unit_id, 1) < end``. Inside its
slice an experiment picks the variant with its own seed at coverage 1, so growing the slice from its
start never moves a unit that was in.

Slice arithmetic is exact on a grid of one millionth (``LAYER_RESOLUTION``): ``start`` and ``width``
count as ``floor(x * 1_000_000 + 0.5)`` cells (rounded half up, like JavaScript's ``Math.round``), and
the namespace bounds are ``start_cells / 1_000_000`` and ``(start_cells + width_cells) / 1_000_000``
(``layer_namespace``). Two slices that touch on the grid therefore share the very same double as
boundary (10% + 20% + 70% fill a layer exactly, and a start stored as ``0.3`` touches, not overlaps, a
slice ending at ``0.1 + 0.2``). Store slice starts and traffic allocations with at least 6 decimal
places; finer differences are rounded away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from struct import unpack
from typing import Any

__all__ = [
    "LAYER_RESOLUTION",
    "NAMESPACE_SEED_PREFIX",
    "UNIT_ID_ATTRIBUTE",
    "allocate_slice",
    "assign_variant",
    "bucket",
    "bucket_ranges",
    "can_grow",
    "choose_variation",
    "equal_weights",
    "fnv1a32",
    "hash_text",
    "in_namespace",
    "in_rollout",
    "layer_namespace",
    "unit_hash",
    "variant_ranges",
]

NAMESPACE_SEED_PREFIX = "__"  # GrowthBook's inNamespace hashes "__" + namespace id (version 1)
LAYER_RESOLUTION = 1_000_000  # cells of a layer: slice starts and widths are exact multiples of 1e-6
UNIT_ID_ATTRIBUTE = "id"  # the hash attribute that names the unit id (GrowthBook's default)

Namespace = tuple[str, float, float]


def _code_units(text: str) -> Iterable[int]:
    data = text.encode("utf-16-le", "surrogatepass")
    return unpack(f"<{len(data) // 2}H", data)


def _fnv1a32_from(value: int, text: str) -> int:
    """FNV-1a state ``value`` carried on over the UTF-16 code units of ``text``."""
    for unit in text.encode("ascii") if text.isascii() else _code_units(text):
        value = ((value ^ unit) * 0x01000193) & 0xFFFFFFFF  # literals, not globals, in this hot loop
    return value


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a over the UTF-16 code units of ``text``, as GrowthBook's JavaScript SDK computes it."""
    return _fnv1a32_from(0x811C9DC5, text)  # the FNV offset basis


@lru_cache(maxsize=4096)
def _seed_state(seed: str) -> int:
    # FNV-1a reads its input one code unit at a time, so fnv1a32(seed + unit_id) is the state after
    # the seed carried on over the unit id: the seed's part (a third or more of the work on every
    # evaluation) is done once per seed. A Python str never joins a lone surrogate at the end of the
    # seed with one at the start of the unit id, so the code units are the same either way.
    return fnv1a32(seed)


def bucket(seed: str, unit_id: str, version: int = 2) -> float | None:
    """The unit's deterministic position in [0, 1) for ``seed`` (GrowthBook's ``hash``; algorithm above).

    Version 2 unless told; ``None`` for a version GrowthBook does not define. Stable across processes,
    machines and languages (never Python's ``hash()``).
    """
    if version == 2:
        return (fnv1a32(str(_fnv1a32_from(_seed_state(seed), unit_id))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(unit_id + seed) % 1000) / 1000
    return None


def _js_number_text(number: float) -> str:
    """``number`` as JavaScript's ``String(number)`` writes it (ECMAScript ``Number::toString``).

    Python's ``repr`` gives the shortest digits that read back as the same double; JavaScript lays
    the same digits out in plain notation for decimal exponents -6..21 and as ``1.5e-7`` otherwise.
    """
    if number == 0:
        return "0"
    if number < 0:
        return "-" + _js_number_text(-number)
    mantissa, _, exponent = repr(number).partition("e")
    whole, _, fraction = mantissa.partition(".")
    padded = (whole + fraction).lstrip("0")
    digits = padded.rstrip("0")
    k = len(digits)
    n = int(exponent or "0") - len(fraction) + len(padded)  # number = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    return digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if n > 0 else "-") + str(abs(n - 1))


def hash_text(value: Any) -> str:
    """The text a GrowthBook SDK hashes for an attribute value, or ``""`` when it identifies nobody.

    A non-empty string is itself; a finite, non-zero number (not a boolean) is written as JavaScript
    writes it; anything else (missing, ``null``, ``""``, ``0``, booleans, objects, lists) gives ``""``.
    """
    if type(value) is str:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    if isinstance(value, int) and -(2**53) <= value <= 2**53:
        return str(value) if value else ""
    try:
        number = float(value)
    except OverflowError:  # an integer past the largest double is Infinity in JavaScript
        return ""
    if number == 0 or not math.isfinite(number):
        return ""
    return _js_number_text(number)


def unit_hash(
    unit_id: str,
    attributes: Mapping[str, Any],
    hash_attribute: str = UNIT_ID_ATTRIBUTE,
    fallback_attribute: str | None = None,
) -> tuple[str, str] | None:
    """``(attribute used, text to hash)`` for a unit, or ``None`` when neither attribute identifies it.

    ``id`` is the unit id; another name is the attribute's ``hash_text``. The fallback is tried only
    when the hash attribute gives nothing (GrowthBook's ``getHashAttribute``).
    """
    value = unit_id if hash_attribute == UNIT_ID_ATTRIBUTE else hash_text(attributes.get(hash_attribute))
    if value:
        return hash_attribute, value
    if fallback_attribute:
        if fallback_attribute == UNIT_ID_ATTRIBUTE:
            value = unit_id
        else:
            value = hash_text(attributes.get(fallback_attribute))
        if value:
            return fallback_attribute, value
    return None


def equal_weights(num_variations: int) -> list[float]:
    """GrowthBook's ``getEqualWeights``: ``num_variations`` weights of ``1 / num_variations``."""
    if num_variations < 1:
        return []
    return [1.0 / num_variations] * num_variations


def bucket_ranges(
    num_variations: int, coverage: float, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """GrowthBook's ``getBucketRanges``: one ``[start, end)`` range per variation.

    ``coverage`` is clamped to [0, 1]; ``weights`` that are missing, of the wrong length or that do not
    sum to 1 (within 0.99..1.01) are replaced by equal weights, as the specification says.
    """
    coverage = min(max(coverage, 0.0), 1.0)
    if weights is None or len(weights) != num_variations:
        weights = equal_weights(num_variations)
    total = sum(weights)
    if total < 0.99 or total > 1.01:
        weights = equal_weights(num_variations)
    ranges = []
    cumulative = 0.0
    for weight in weights:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def choose_variation(n: float, ranges: Sequence[Sequence[float]]) -> int:
    """GrowthBook's ``chooseVariation``: index of the first range holding ``n``, or -1."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


def in_namespace(unit_id: str, namespace: Sequence) -> bool:
    """GrowthBook's ``inNamespace``: ``start <= bucket("__" + id, unit_id, 1) < end``."""
    n = bucket(NAMESPACE_SEED_PREFIX + namespace[0], unit_id, 1)
    return namespace[1] <= n < namespace[2]


def variant_ranges(weights: Sequence[float], coverage: float) -> list[tuple[float, float]]:
    """The ranges of an experiment with relative ``weights`` at ``coverage`` (its traffic allocation).

    The weights are normalised to sum to 1, then passed to ``bucket_ranges``, so a GrowthBook SDK given
    the normalised weights computes the same ranges. Raises ``ValueError`` on weights that are empty,
    negative, not finite or all zero, and on a coverage outside [0, 1].
    """
    if not weights:
        raise ValueError("at least one variant weight is required")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"variant weights must be finite and non-negative, got {list(weights)!r}")
    total = math.fsum(weights)
    if total <= 0 or not math.isfinite(total):
        raise ValueError("variant weights must not all be zero")
    if not 0.0 <= coverage <= 1.0:  # also refuses NaN
        raise ValueError(f"coverage must be between 0 and 1, got {coverage!r}")
    return bucket_ranges(len(weights), coverage, [w / total for w in weights])


@lru_cache(maxsize=1024)
def _cached_ranges(weights: tuple[float, ...], coverage: float) -> tuple[tuple[float, float], ...]:
    # An experiment's ranges are the same for every unit: compute them once per configuration.
    return tuple(variant_ranges(weights, coverage))


def _cells(fraction: float) -> int:
    # Round half up (not Python's half-to-even round()), so every SDK gets the same cell count.
    return int(fraction * LAYER_RESOLUTION + 0.5)


def _check_slice(start: float, width: float) -> None:
    if not (0.0 <= start <= 1.0 and 0.0 <= width <= 1.0):  # also refuses NaN
        raise ValueError(f"a layer slice needs start and width in [0, 1], got ({start!r}, {width!r})")


def layer_namespace(layer: str, start: float, width: float) -> Namespace:
    """The GrowthBook namespace ``(layer, start, end)`` of the slice ``[start, start + width)``.

    Bounds are on the 1e-6 grid (module docstring), so touching slices share the same boundary double.
    """
    _check_slice(start, width)
    first = _cells(start)
    return (layer, first / LAYER_RESOLUTION, (first + _cells(width)) / LAYER_RESOLUTION)


@lru_cache(maxsize=1024)
def _cached_namespace(layer: str, start: float, width: float) -> Namespace:
    return layer_namespace(layer, start, width)


def _occupied(taken: Iterable[tuple[float, float]]) -> list[tuple[int, int]]:
    """The taken slices as sorted ``(first_cell, end_cell)`` pairs, leaving out empty ones."""
    cells = []
    for start, width in taken:
        _check_slice(start, width)
        first, size = _cells(start), _cells(width)
        if size > 0:  # an empty slice owns no unit and reserves nothing
            cells.append((first, first + size))
    return sorted(cells)


def allocate_slice(taken: Sequence[tuple[float, float]], width: float) -> float | None:
    """Start of a new slice of ``width`` in the free part of a layer (first fit), or ``None``.

    ``taken`` lists the other experiments' ``(start, width)`` slices. The slice goes to the lowest
    free gap that is at least ``width`` long and not empty (so a zero-width slice also gets a start it
    can later grow from); ``None`` when no gap fits. The start is a multiple of 1e-6.
    """
    _check_slice(0.0, width)
    size = _cells(width)
    candidate = 0
    for first, end in _occupied(taken):
        if candidate + size <= first and candidate < first:
            return candidate / LAYER_RESOLUTION
        candidate = max(candidate, end)
    if candidate + size <= LAYER_RESOLUTION and candidate < LAYER_RESOLUTION:
        return candidate / LAYER_RESOLUTION
    return None


def can_grow(taken_others: Sequence[tuple[float, float]], start: float, new_width: float) -> bool:
    """Whether a slice can take ``new_width`` from its own ``start`` (a ramp-up, or a ramp-down).

    Refused when the slice would overlap another experiment's slice in ``taken_others`` or pass 1.0.
    """
    _check_slice(start, new_width)
    first = _cells(start)
    end = first + _cells(new_width)
    if end > LAYER_RESOLUTION:
        return False
    if end == first:
        return True
    return all(end <= other_first or other_end <= first for other_first, other_end in _occupied(taken_others))


def assign_variant(
    *,
    seed: str,
    unit_id: str,
    weights: Sequence[float],
    traffic_allocation: float,
    layer: str | None = None,
    layer_slice_start: float | None = None,
) -> int | None:
    """The variant index of a unit in an experiment, or ``None`` when the unit is not in it.

    Outside a layer the experiment's ranges use ``coverage = traffic_allocation``. In a layer the unit
    is in when ``in_namespace(unit_id, layer_namespace(layer, layer_slice_start, traffic_allocation))``,
    and the variant is then chosen with the experiment's seed at coverage 1. Either way the variant is
    ``choose_variation(bucket(seed, unit_id, 2), ranges)``, raising ``traffic_allocation`` never moves a
    unit that was in, and an empty unit id is in nothing (as GrowthBook's SDKs skip an empty hash value).
    Raises ``ValueError`` on invalid weights, allocation or slice.
    """
    if layer is None:
        if layer_slice_start is not None:
            raise ValueError("layer_slice_start is only meaningful with a layer")
        ranges = _cached_ranges(tuple(weights), traffic_allocation)
    else:
        if layer_slice_start is None:
            raise ValueError(f"an experiment in layer {layer!r} needs its layer_slice_start")
        ranges = _cached_ranges(tuple(weights), 1.0)
        if unit_id and not in_namespace(
            unit_id, _cached_namespace(layer, layer_slice_start, traffic_allocation)
        ):
            return None
    if not unit_id:
        return None
    index = choose_variation(bucket(seed, unit_id, 2), ranges)
    return None if index < 0 else index


def in_rollout(seed: str, unit_id: str, coverage: float) -> bool:
    """Whether a unit is in a rollout rule of ``coverage`` (0..1): GrowthBook's ``isIncludedInRollout``.

    ``seed`` is the rule's seed, the feature key by default. Coverage 0 lets nobody in; otherwise the
    unit is in when ``bucket(seed, unit_id, 2) <= coverage`` (inclusive, as the specification and the
    JavaScript SDK; GrowthBook's Python SDK 4.0.0 uses ``<``). An empty unit id is never in. Raising
    coverage only adds units.
    """
    if coverage <= 0 or not unit_id:
        return False
    return bucket(seed, unit_id, 2) <= coverage
