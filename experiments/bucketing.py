"""Deterministic bucketing: which unit sees which variant, rollout and layer slice.

Pure functions over plain data (no ORM, no I/O): they run on every assignment and flag evaluation.

Hash (``bucket``)
=================
A unit's bucket for a seed is a number in [0, 1), computed as follows so that any SDK can
reproduce it bit for bit:

1. ``message = seed + "\\x1f" + unit_id`` -- the two strings joined by U+001F (INFORMATION
   SEPARATOR ONE), encoded as UTF-8. A lone surrogate code unit (possible in JSON input) is
   encoded as U+FFFD, as the WHATWG ``TextEncoder`` does.
2. ``digest = SHA-256(message)`` (FIPS 180-4).
3. ``x = the first 8 bytes of digest read as an unsigned big-endian 64-bit integer``.
4. ``bucket = (x >> 11) / 2**53`` -- the top 53 bits as a fraction. Every step is exact in IEEE 754
   double precision, and the result is never 1.0.

In JavaScript, without BigInt: ``hi = view.getUint32(0); lo = view.getUint32(4);
bucket = (hi * 2 ** 21 + (lo >>> 11)) / 2 ** 53``.

Test vectors (also asserted in ``tests/experiments/test_bucketing.py``)::

    bucket("checkout-button", "user-1")        == 0.046104729009597945
    bucket("", "")                             == 0.9996105273049685
    bucket("layer:homepage", "ünïcødé-42 😀")  == 0.5311401150343583

SHA-256 over a short string in CPython's C implementation costs about 1 µs (close to MD5 and
BLAKE2b, about 4x faster than a pure-Python FNV-1a), and SHA-256 is available in every language's
standard library. Different seeds give independent buckets for the same unit.

Seeds
=====
- An experiment's variant: the experiment's own hash seed (stored on the experiment; it never
  changes while the experiment runs), or its key when the seed is empty.
- A layer position: ``"layer:" + layer_key`` (``layer_position``). The layer key is free text
  (``"home page/v2"`` hashes the seed ``"layer:home page/v2"``), used as stored: no escaping and
  no normalisation beyond the surrounding whitespace trimmed when it is saved.
- A feature rollout rule: ``"rollout:" + feature_key`` (``in_rollout``).

The three kinds cannot collide: experiment keys are slugs (no ``:``), and ``Experiment.clean()``
refuses a hash seed that starts with ``"layer:"`` or ``"rollout:"``, so an experiment never buckets
units as a layer or a rollout does. A seed containing U+001F could produce the same message as
another (seed, unit) pair, and lone surrogates all encode as U+FFFD; ``Experiment.clean()`` refuses
control characters and lone surrogates in layer keys and hash seeds, which never need them.

Variant ranges (GrowthBook's ``getBucketRanges``/``chooseVariation``)
=====================================================================
Weights are relative. Variant ``i`` owns ``[start_i, start_i + coverage * w_i)`` where ``start_i`` is
the cumulative normalised weight of the variants before it. Raising coverage grows every range from
its own start, so a unit that was in stays in the same variant. Ranges are clipped at the next
variant's start, and at coverage 1 they tile [0, 1) exactly (no gap from floating-point sums).

Layers
======
Experiments sharing a layer key never share a unit: a unit's layer position is
``bucket("layer:" + layer_key, unit_id)`` and each experiment owns a slice ``[start, start + width)``
of the layer with ``width = traffic_allocation``. Inside its slice an experiment picks the variant
with its own seed at coverage 1, so growing the slice from its start never moves a unit that was in.

Slice arithmetic is exact on a grid of one millionth (``LAYER_RESOLUTION``): ``start`` and ``width``
count as ``floor(x * 1_000_000 + 0.5)`` cells (rounded half up, like JavaScript's ``Math.round``) and a
position as cell ``floor(position * 1_000_000)``. A unit is in a slice when
``start_cells <= position_cell < start_cells + width_cells``. Integer cells make
exclusivity independent of floating-point sums (10% + 20% + 70% fill a layer exactly, and a start
stored as ``0.3`` still touches, not overlaps, a slice ending at ``0.1 + 0.2``). Store slice starts
and traffic allocations with at least 6 decimal places; finer differences are rounded away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from hashlib import sha256
from struct import Struct

__all__ = [
    "LAYER_RESOLUTION",
    "LAYER_SEED_PREFIX",
    "ROLLOUT_SEED_PREFIX",
    "allocate_slice",
    "assign_variant",
    "bucket",
    "can_grow",
    "choose_variant",
    "in_rollout",
    "in_slice",
    "layer_position",
    "variant_ranges",
]

LAYER_SEED_PREFIX = "layer:"
ROLLOUT_SEED_PREFIX = "rollout:"

LAYER_RESOLUTION = 1_000_000  # cells of a layer: slice starts and widths are exact multiples of 1e-6

_UINT64_BE = Struct(">Q").unpack_from
_TWO_POW_MINUS_53 = 2.0**-53


def _utf8(message: str) -> bytes:
    try:
        return message.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates: replace each with U+FFFD, as JavaScript's TextEncoder does.
        return message.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def bucket(seed: str, unit_id: str) -> float:
    """The unit's deterministic position in [0, 1) for ``seed`` (algorithm in the module docstring).

    Stable across processes, machines and Python versions (never Python's ``hash()``), uniform, and
    independent between different seeds.
    """
    digest = sha256(_utf8(f"{seed}\x1f{unit_id}")).digest()
    return (_UINT64_BE(digest)[0] >> 11) * _TWO_POW_MINUS_53


def variant_ranges(weights: Sequence[float], coverage: float) -> list[tuple[float, float]]:
    """Half-open bucket ranges ``[start, end)`` of each variant, as GrowthBook's ``getBucketRanges``.

    ``weights`` are relative (normalised here); ``coverage`` in [0, 1] is the share of units in the
    experiment. Raising ``coverage`` only extends each range from its own start, so it never moves a
    unit that was already in. Raises ``ValueError`` on weights that are empty, negative, not finite or
    all zero, and on a coverage outside [0, 1].
    """
    if not weights:
        raise ValueError("at least one variant weight is required")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"variant weights must be finite and non-negative, got {list(weights)!r}")
    total = math.fsum(weights)
    if total <= 0:
        raise ValueError("variant weights must not all be zero")
    if not 0.0 <= coverage <= 1.0:  # also refuses NaN
        raise ValueError(f"coverage must be between 0 and 1, got {coverage!r}")

    starts: list[float] = []
    cumulative = 0.0
    for weight in weights:
        starts.append(min(cumulative / total, 1.0))
        cumulative += weight
    starts.append(1.0)

    ranges: list[tuple[float, float]] = []
    for i, weight in enumerate(weights):
        start, next_start = starts[i], starts[i + 1]
        # min() keeps ranges disjoint and monotone in coverage despite rounding; at coverage 1 the
        # ranges tile [0, 1) exactly.
        end = next_start if coverage >= 1.0 else min(start + coverage * (weight / total), next_start)
        ranges.append((start, end))
    return ranges


def choose_variant(n: float, ranges: Sequence[tuple[float, float]]) -> int | None:
    """Index of the variant whose range holds bucket ``n``, or ``None`` when ``n`` is not covered."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return None


@lru_cache(maxsize=1024)
def _cached_ranges(weights: tuple[float, ...], coverage: float) -> tuple[tuple[float, float], ...]:
    # An experiment's ranges are the same for every unit: compute them once per configuration.
    return tuple(variant_ranges(weights, coverage))


def layer_position(layer: str, unit_id: str) -> float:
    """The unit's position in a layer: ``bucket("layer:" + layer, unit_id)``."""
    return bucket(LAYER_SEED_PREFIX + layer, unit_id)


def _cells(fraction: float) -> int:
    # Round half up (not Python's half-to-even round()), so every SDK gets the same cell count.
    return int(fraction * LAYER_RESOLUTION + 0.5)


def in_slice(position: float, start: float, width: float) -> bool:
    """Whether a layer position falls in the slice ``[start, start + width)`` (on the 1e-6 grid).

    ``start`` and ``width`` are in [0, 1]; the grid is described in the module docstring.
    """
    first = int(start * LAYER_RESOLUTION + 0.5)
    # position < 1, so its cell is at most LAYER_RESOLUTION - 1 (the product never rounds up to 1e6).
    return first <= int(position * LAYER_RESOLUTION) < first + int(width * LAYER_RESOLUTION + 0.5)


def _check_slice(start: float, width: float) -> None:
    if not (0.0 <= start <= 1.0 and 0.0 <= width <= 1.0):  # also refuses NaN
        raise ValueError(f"a layer slice needs start and width in [0, 1], got ({start!r}, {width!r})")


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
    is in when its layer position falls in the experiment's slice ``[layer_slice_start,
    layer_slice_start + traffic_allocation)`` (on the layer's 1e-6 grid), and the variant is then
    chosen with the experiment's seed at coverage 1. Either way, raising ``traffic_allocation`` never
    moves a unit that was in. Raises ``ValueError`` on invalid weights, allocation or slice.
    """
    if layer is None:
        if layer_slice_start is not None:
            raise ValueError("layer_slice_start is only meaningful with a layer")
        return choose_variant(bucket(seed, unit_id), _cached_ranges(tuple(weights), traffic_allocation))
    if layer_slice_start is None:
        raise ValueError(f"an experiment in layer {layer!r} needs its layer_slice_start")
    _check_slice(layer_slice_start, traffic_allocation)
    if not in_slice(layer_position(layer, unit_id), layer_slice_start, traffic_allocation):
        return None
    return choose_variant(bucket(seed, unit_id), _cached_ranges(tuple(weights), 1.0))


def in_rollout(feature_key: str, unit_id: str, coverage: float) -> bool:
    """Whether a unit is in a feature rollout rule of ``coverage`` (0..1).

    The unit is in when ``bucket("rollout:" + feature_key, unit_id) < coverage``: coverage 0 lets
    nobody in, 1 everybody, and raising it only adds units. Every rollout rule of a feature shares
    the seed, so a unit's chance is the same in every rule and environment of that feature.
    """
    return bucket(ROLLOUT_SEED_PREFIX + feature_key, unit_id) < coverage
