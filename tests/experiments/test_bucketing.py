"""Bucketing: the documented hash, variant ranges, ramp-up, layers and rollouts.

Statistical tests use fixed, sequential unit ids (the realistic worst case for a weak hash), so they
are deterministic: a p-value computed once is the same on every run.
"""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from experiments import bucketing
from experiments.bucketing import (
    allocate_slice,
    assign_variant,
    bucket,
    can_grow,
    choose_variation,
    in_namespace,
    in_rollout,
    layer_namespace,
    variant_ranges,
)
from tests.support.hash_reference import fnv1a32_reference, reference_bucket

PROJECT_ROOT = Path(__file__).resolve().parents[2]
N_UNITS = 100_000
UNIT_IDS = [f"user-{i}" for i in range(N_UNITS)]
P_FLOOR = 0.001

TEST_VECTORS = [
    ("checkout-button", "user-1", 2, 0.5603),
    ("", "", 2, 0.2305),
    ("__homepage", "ünïcødé-42 😀", 1, 0.124),
    ("a", "b", 1, 0.708),
]


def layer_position(layer: str, unit_id: str) -> float:
    """The position the layer's namespace tests: GrowthBook's inNamespace hash."""
    return bucket("__" + layer, unit_id, 1)


@pytest.fixture(scope="module")
def buckets_by_seed() -> dict[str, np.ndarray]:
    seeds = ["checkout-button", "pricing-page"]
    return {seed: np.array([bucket(seed, unit_id) for unit_id in UNIT_IDS]) for seed in seeds}


# --- the hash ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "unit_id", "version", "expected"), TEST_VECTORS)
def test_bucket__documented_test_vector__gives_documented_value(
    seed: str, unit_id: str, version: int, expected: float
) -> None:
    assert bucket(seed, unit_id, version) == expected


def test_bucket__module_docstring__lists_the_asserted_test_vectors() -> None:
    documented = re.findall(r'bucket\("(.*?)", "(.*?)", (\d)\)\s+== (\S+)', bucketing.__doc__)
    assert [(seed, unit_id, int(v), float(value)) for seed, unit_id, v, value in documented] == TEST_VECTORS


def test_fnv1a32__published_fnv_vectors__same_values() -> None:
    # The FNV-1a 32-bit test vectors of the FNV reference (draft-eastlake-fnv, section 8)
    assert bucketing.fnv1a32("") == 0x811C9DC5
    assert bucketing.fnv1a32("a") == 0xE40C292C
    assert bucketing.fnv1a32("foobar") == 0xBF9CF968


@pytest.mark.parametrize(
    ("seed", "unit_id"),
    [
        *[(seed, unit_id) for seed, unit_id, _, _ in TEST_VECTORS],
        ("checkout-button", "user-2"),
        ("new-nav", "42"),
        ("exp-" + "x" * 100, "long-" + "y" * 200),
        ("日本語", "ユーザー"),
        ("emoji", "😀 \ud800 lone surrogate"),
    ],
)
@pytest.mark.parametrize("version", [1, 2])
def test_bucket__any_seed_and_unit__equals_independent_reference(
    seed: str, unit_id: str, version: int
) -> None:
    # Fraction -> float of k/1000 or k/10000 is the correctly rounded double the division gives.
    assert bucket(seed, unit_id, version) == float(reference_bucket(seed, unit_id, version))
    assert bucketing.fnv1a32(seed + unit_id) == fnv1a32_reference(seed + unit_id)


def test_bucket__sample_of_units__equals_independent_reference() -> None:
    for i in range(0, N_UNITS, 997):
        assert bucket("pricing-page", UNIT_IDS[i]) == float(reference_bucket("pricing-page", UNIT_IDS[i]))


def test_bucket__characters_outside_the_bmp__hashed_as_two_utf16_code_units() -> None:
    # As JavaScript's charCodeAt: U+1F600 is the surrogate pair D83D DE00.
    assert bucketing.fnv1a32("😀") == bucketing.fnv1a32("\ud83d\ude00")
    assert bucket("exp", "a\ud800b") is not None  # a lone surrogate is one code unit, never an error


def test_bucket__unknown_version__none() -> None:
    assert bucket("s", "u", 3) is None


def test_bucket__100k_units__always_in_unit_interval(buckets_by_seed: dict[str, np.ndarray]) -> None:
    # Version 2 buckets are multiples of 1/10000 in [0, 0.9999]
    for values in buckets_by_seed.values():
        assert values.min() >= 0.0
        assert values.max() < 1.0


@pytest.mark.parametrize("seed", ["checkout-button", "pricing-page"])
def test_bucket__100k_sequential_units__uniform_over_100_bins(
    buckets_by_seed: dict[str, np.ndarray], seed: str
) -> None:
    observed = np.bincount((buckets_by_seed[seed] * 100).astype(int), minlength=100)
    assert stats.chisquare(observed).pvalue > P_FLOOR


def test_bucket__separate_python_process__same_values() -> None:
    # Given a fresh interpreter with a different hash randomisation
    sample = [(seed, unit_id) for seed, unit_id, _, _ in TEST_VECTORS] + [
        ("pricing-page", u) for u in UNIT_IDS[:500]
    ]
    script = (
        "import json, sys\n"
        "from experiments.bucketing import bucket\n"
        "pairs = json.load(sys.stdin)\n"
        "print(json.dumps([bucket(seed, unit_id) for seed, unit_id in pairs]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242", "PYTHONPATH": str(PROJECT_ROOT)}
    # When it computes the buckets
    completed = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(sample),
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        timeout=60,
    )
    # Then they are exactly the in-process values (JSON round-trips doubles exactly)
    assert json.loads(completed.stdout) == [bucket(seed, unit_id) for seed, unit_id in sample]


def test_bucket__two_experiment_seeds__variants_independent(buckets_by_seed: dict[str, np.ndarray]) -> None:
    # Given two experiments, with 3 and 2 variants, over the same 100,000 units
    first = [choose_variation(n, variant_ranges([1, 1, 1], 1.0)) for n in buckets_by_seed["checkout-button"]]
    second = [choose_variation(n, variant_ranges([1, 1], 1.0)) for n in buckets_by_seed["pricing-page"]]
    # When we cross-tabulate their variants
    table = np.zeros((3, 2))
    for (a, b), count in Counter(zip(first, second, strict=True)).items():
        table[a, b] = count
    # Then a chi-square test of independence finds nothing
    assert stats.chi2_contingency(table).pvalue > P_FLOOR


def test_bucket__two_seeds__bucket_values_uncorrelated(buckets_by_seed: dict[str, np.ndarray]) -> None:
    r = np.corrcoef(buckets_by_seed["checkout-button"], buckets_by_seed["pricing-page"])[0, 1]
    assert abs(r) < 0.015  # ~4.7 standard errors of r at n = 100,000


# --- variant ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "coverage", "expected"),
    [
        ([0.5, 0.5], 1.0, [(0.0, 0.5), (0.5, 1.0)]),
        ([0.5, 0.5], 0.5, [(0.0, 0.25), (0.5, 0.75)]),
        ([1, 1], 0.5, [(0.0, 0.25), (0.5, 0.75)]),  # weights are relative
        ([50, 50], 0.0, [(0.0, 0.0), (0.5, 0.5)]),
        ([1, 1, 2], 1.0, [(0.0, 0.25), (0.25, 0.5), (0.5, 1.0)]),
        ([0.2, 0.3, 0.5], 0.8, [(0.0, 0.16), (0.2, 0.44), (0.5, 0.9)]),
        ([1, 0, 1], 1.0, [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0)]),  # a zero-weight variant gets nobody
        ([3], 0.3, [(0.0, 0.3)]),
    ],
)
def test_variant_ranges__weights_and_coverage__growthbook_ranges(
    weights: list[float], coverage: float, expected: list[tuple[float, float]]
) -> None:
    ranges = variant_ranges(weights, coverage)
    assert len(ranges) == len(expected)
    for (start, end), (expected_start, expected_end) in zip(ranges, expected, strict=True):
        assert start == pytest.approx(expected_start, abs=1e-12)
        assert end == pytest.approx(expected_end, abs=1e-12)


@pytest.mark.parametrize(
    "weights", [[0.1] * 10, [1 / 3] * 3, [0.7, 0.2, 0.1], [1e-9, 1, 1e9], [0.15, 0.35, 0.5]]
)
def test_variant_ranges__full_coverage__tile_unit_interval_without_gaps(weights: list[float]) -> None:
    ranges = variant_ranges(weights, 1.0)
    assert ranges[0][0] == 0.0
    assert ranges[-1][1] > 0.9999  # covers the highest version 2 bucket (sums may round just below 1)
    for (_, end), (next_start, _) in zip(ranges, ranges[1:], strict=False):
        assert end == next_start


@pytest.mark.parametrize("weights", [[1, 1], [0.1] * 10, [0.7, 0.2, 0.1], [1, 2, 3, 4]])
def test_variant_ranges__coverage_raised__every_range_contains_the_smaller_one(weights: list[float]) -> None:
    coverages = [0.0, 0.01, 0.1, 0.3333333333333333, 0.5, 0.9, 0.999999999, 1.0]
    for low, high in zip(coverages, coverages[1:], strict=False):
        for (low_start, low_end), (high_start, high_end) in zip(
            variant_ranges(weights, low), variant_ranges(weights, high), strict=True
        ):
            assert low_start == high_start
            assert low_end <= high_end


@pytest.mark.parametrize(
    ("weights", "coverage"),
    [
        ([], 1.0),
        ([-1, 2], 1.0),
        ([0, 0], 1.0),
        ([float("nan"), 1], 1.0),
        ([float("inf"), 1], 1.0),
        ([1, 1], 1.5),
        ([1, 1], -0.1),
        ([1, 1], float("nan")),
    ],
)
def test_variant_ranges__invalid_weights_or_coverage__raise_value_error(
    weights: list[float], coverage: float
) -> None:
    with pytest.raises(ValueError):
        variant_ranges(weights, coverage)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0.0, 0),
        (0.2499, 0),
        (0.25, -1),  # end is exclusive; [0.25, 0.5) is not covered
        (0.4999, -1),
        (0.5, 1),  # start is inclusive
        (0.7499, 1),
        (0.75, -1),
        (0.9999999, -1),
    ],
)
def test_choose_variation__bucket_position__variant_index_or_minus_one(n: float, expected: int) -> None:
    assert choose_variation(n, [(0.0, 0.25), (0.5, 0.75)]) == expected


def test_choose_variation__empty_ranges__minus_one() -> None:
    assert choose_variation(0.3, [(0.3, 0.3)]) == -1
    assert choose_variation(0.3, []) == -1


# --- assign_variant outside a layer -----------------------------------------------------------------


def _assignments(traffic_allocation: float, weights: list[float], **layer: object) -> list[int | None]:
    return [
        assign_variant(
            seed="checkout-button",
            unit_id=unit_id,
            weights=weights,
            traffic_allocation=traffic_allocation,
            **layer,
        )
        for unit_id in UNIT_IDS
    ]


def test_assign_variant__ramp_up_10_50_100__units_already_in_keep_their_variant() -> None:
    weights = [1, 1, 2]
    ramp = [_assignments(allocation, weights) for allocation in (0.1, 0.5, 1.0)]
    for before, after in zip(ramp, ramp[1:], strict=False):
        moved = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b is not None and a != b]
        assert moved == []
    shares = [sum(v is not None for v in step) / N_UNITS for step in ramp]
    assert shares == pytest.approx([0.1, 0.5, 1.0], abs=0.005)


@pytest.mark.parametrize(
    ("weights", "traffic_allocation"), [([1, 2, 7], 1.0), ([0.5, 0.5], 0.4), ([5, 3, 1, 1], 0.7)]
)
def test_assign_variant__weights__respected_among_units_in(
    weights: list[float], traffic_allocation: float
) -> None:
    # Given 100,000 units
    variants = _assignments(traffic_allocation, weights)
    # Then the share in the experiment is the traffic allocation
    counts = Counter(v for v in variants if v is not None)
    assert sum(counts.values()) / N_UNITS == pytest.approx(traffic_allocation, abs=0.005)
    # And the variants follow the weights, by a chi-square goodness-of-fit test and within 1 point
    observed = np.array([counts[i] for i in range(len(weights))])
    expected = np.array(weights) / sum(weights) * observed.sum()
    assert stats.chisquare(observed, expected).pvalue > P_FLOOR
    assert observed / observed.sum() == pytest.approx(np.array(weights) / sum(weights), abs=0.01)


@pytest.mark.parametrize(("traffic_allocation", "expected_in"), [(0.0, 0), (1.0, 2000)])
def test_assign_variant__traffic_allocation_bounds__nobody_or_everybody(
    traffic_allocation: float, expected_in: int
) -> None:
    variants = [
        assign_variant(seed="s", unit_id=u, weights=[1, 1], traffic_allocation=traffic_allocation)
        for u in UNIT_IDS[:2000]
    ]
    assert sum(v is not None for v in variants) == expected_in


def test_assign_variant__outside_layer__equals_documented_composition() -> None:
    for unit_id in UNIT_IDS[:1000]:
        index = choose_variation(bucket("checkout-button", unit_id, 2), variant_ranges([1, 3], 0.6))
        assert assign_variant(
            seed="checkout-button", unit_id=unit_id, weights=[1, 3], traffic_allocation=0.6
        ) == (None if index == -1 else index)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"layer": "home"},  # a layer without the experiment's slice start
        {"layer_slice_start": 0.2},  # a slice start without a layer
        {"layer": "home", "layer_slice_start": 1.5},
    ],
)
def test_assign_variant__inconsistent_layer_arguments__raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        assign_variant(seed="s", unit_id="u", weights=[1, 1], traffic_allocation=0.5, **kwargs)


# --- layers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["home page/v2", "Startseite · Über uns", "rollout:checkout", "a:b/c d"])
def test_in_namespace__free_text_layer_key__documented_hash_of_the_key_as_is(layer: str) -> None:
    # GrowthBook's inNamespace: bucket("__" + id, unit, 1), the layer key hashed as stored.
    for unit_id in ("user-7", "ünïcødé-42 😀", "x"):
        n = float(reference_bucket("__" + layer, unit_id, 1))
        assert in_namespace(unit_id, (layer, n, n + 0.001)) is True
        assert in_namespace(unit_id, (layer, 0.0, n)) is False


@pytest.mark.parametrize(
    ("start", "width", "expected"),
    [
        (0.2, 0.3, ("home", 0.2, 0.5)),
        (0.1, 0.2, ("home", 0.1, 0.3)),  # 0.1 + 0.2 == 0.30000000000000004 in floats; the grid gives 0.3
        (0.0, 1.0, ("home", 0.0, 1.0)),
        (0.3, 0.0, ("home", 0.3, 0.3)),  # an empty slice holds nobody
        # 0.1000005 is 100000.5 cells: rounded half up (as Math.round) to 100001, not to even (100000)
        (0.0, 0.1000005, ("home", 0.0, 0.100001)),
    ],
)
def test_layer_namespace__slice__growthbook_namespace_on_the_grid(
    start: float, width: float, expected: tuple[str, float, float]
) -> None:
    assert layer_namespace("home", start, width) == expected


def test_layer_namespace__adjacent_slices__every_unit_in_at_most_one() -> None:
    # Given slices [0.1, 0.3) and [0.3, 0.4), the first ending at the float sum 0.1 + 0.2
    first, second = layer_namespace("home", 0.1, 0.2), layer_namespace("home", 0.3, 0.1)
    assert first[2] == second[1]
    # Then every unit is in at most one of them, and the two hold the units of [0.1, 0.4)
    both = [(in_namespace(u, first), in_namespace(u, second)) for u in UNIT_IDS[:20_000]]
    assert not any(a and b for a, b in both)
    positions = [layer_position("home", u) for u in UNIT_IDS[:20_000]]
    assert sum(a or b for a, b in both) == sum(0.1 <= p < 0.4 for p in positions)


def test_assign_variant__two_experiments_in_one_layer__never_share_a_unit() -> None:
    # Given two experiments sharing the "homepage" layer, in slices the allocator hands out
    first_start = allocate_slice([], 0.3)
    second_start = allocate_slice([(first_start, 0.3)], 0.5)
    assert (first_start, second_start) == (0.0, 0.3)

    # When 100,000 units are assigned to both
    def assign(seed: str, start: float, width: float) -> list[int | None]:
        return [
            assign_variant(
                seed=seed,
                unit_id=unit_id,
                weights=[1, 1],
                traffic_allocation=width,
                layer="homepage",
                layer_slice_start=start,
            )
            for unit_id in UNIT_IDS
        ]

    first = assign("checkout-button", first_start, 0.3)
    second = assign("pricing-page", second_start, 0.5)
    # Then no unit is in both, and each takes its slice's share
    assert not any(a is not None and b is not None for a, b in zip(first, second, strict=True))
    assert sum(a is not None for a in first) / N_UNITS == pytest.approx(0.3, abs=0.005)
    assert sum(b is not None for b in second) / N_UNITS == pytest.approx(0.5, abs=0.005)
    # And inside its slice each experiment splits by its weights
    counts = Counter(a for a in first if a is not None)
    assert stats.chisquare([counts[0], counts[1]]).pvalue > P_FLOOR


def test_assign_variant__layer_slice_ramp_up__units_already_in_keep_their_variant() -> None:
    # Given an experiment whose slice starts at 0.25, next to another at [0.0, 0.25)
    others = [(0.0, 0.25)]
    start = allocate_slice(others, 0.1)
    assert start == 0.25
    ramp = []
    for width in (0.1, 0.5, 0.75):
        assert can_grow(others, start, width)
        ramp.append(_assignments(width, [1, 1, 1], layer="homepage", layer_slice_start=start))
    # Then every unit that was in stays in the same variant
    for before, after in zip(ramp, ramp[1:], strict=False):
        assert all(b is None or a == b for b, a in zip(before, after, strict=True))
    shares = [sum(v is not None for v in step) / N_UNITS for step in ramp]
    assert shares == pytest.approx([0.1, 0.5, 0.75], abs=0.005)


def test_assign_variant__in_layer__variant_independent_of_layer_position() -> None:
    positions = [layer_position("homepage", u) for u in UNIT_IDS]
    variants = _assignments(1.0, [1, 1], layer="homepage", layer_slice_start=0.0)
    table = np.zeros((2, 2))
    for position, variant in zip(positions, variants, strict=True):
        table[int(position >= 0.5), variant] += 1
    assert stats.chi2_contingency(table).pvalue > P_FLOOR


@pytest.mark.parametrize(
    ("taken", "width", "expected"),
    [
        ([], 0.3, 0.0),
        ([], 1.0, 0.0),
        ([(0.0, 0.3)], 0.5, 0.3),
        ([(0.0, 0.3)], 0.7, 0.3),  # exactly fills the rest
        ([(0.0, 0.3)], 0.71, None),
        ([(0.0, 0.3), (0.5, 0.5)], 0.2, 0.3),  # fits the gap exactly
        ([(0.0, 0.3), (0.5, 0.5)], 0.25, None),
        ([(0.5, 0.5), (0.0, 0.3)], 0.2, 0.3),  # order of the taken list does not matter
        ([(0.2, 0.3)], 0.2, 0.0),  # first fit: the gap before the taken slice
        ([(0.2, 0.3)], 0.25, 0.5),  # too big for the first gap
        ([(0.0, 0.1), (0.1, 0.2)], 0.7, 0.3),  # 10% + 20% + 70% fill the layer exactly
        ([(0.0, 1.0)], 0.01, None),
        ([(0.0, 1.0)], 0.0, None),  # a full layer has no start to give, even for an empty slice
        ([(0.0, 0.5)], 0.0, 0.5),  # an empty slice starts in free space, so it can grow later
        ([(0.0, 0.0), (0.0, 0.4)], 0.6, 0.4),  # empty slices reserve nothing
        ([(0.0, 0.4), (0.1, 0.4)], 0.3, 0.5),  # overlapping input: the free part is after both
    ],
)
def test_allocate_slice__taken_slices__first_fit_start_or_none(
    taken: list[tuple[float, float]], width: float, expected: float | None
) -> None:
    assert allocate_slice(taken, width) == expected


def test_allocate_slice__ten_tenths__all_fit_and_an_eleventh_does_not() -> None:
    taken: list[tuple[float, float]] = []
    for _ in range(10):
        start = allocate_slice(taken, 0.1)
        assert start is not None
        taken.append((start, 0.1))
    assert allocate_slice(taken, 0.1) is None
    assert allocate_slice(taken, 1e-6) is None


def test_allocate_slice__allocated_slices__never_overlap_by_construction() -> None:
    # Given slices of awkward widths allocated one after the other
    taken: list[tuple[float, float]] = []
    for width in [0.13, 0.07, 0.2, 0.011, 0.3, 0.17, 0.109]:
        start = allocate_slice(taken, width)
        assert start is not None
        taken.append((start, width))
    # Then no position of 100,000 units falls in two of them
    for unit_id in UNIT_IDS[:20_000]:
        assert (
            sum(in_namespace(unit_id, layer_namespace("checkout", start, width)) for start, width in taken)
            <= 1
        )


@pytest.mark.parametrize(
    ("taken", "width"), [([], 1.5), ([], -0.1), ([(0.0, 2.0)], 0.1), ([(-0.5, 0.1)], 0.1)]
)
def test_allocate_slice__invalid_slices__raise_value_error(
    taken: list[tuple[float, float]], width: float
) -> None:
    with pytest.raises(ValueError):
        allocate_slice(taken, width)


@pytest.mark.parametrize(
    ("others", "start", "new_width", "expected"),
    [
        ([], 0.0, 1.0, True),
        ([(0.5, 0.5)], 0.0, 0.5, True),  # touches the next slice without overlapping
        ([(0.5, 0.5)], 0.0, 0.500001, False),  # would overlap the next slice by one millionth
        ([(0.5, 0.5)], 0.0, 0.5000001, True),  # below the grid: rounds to 0.5
        ([(0.0, 0.3)], 0.3, 0.7, True),  # a slice before the start does not matter
        ([(0.0, 0.3)], 0.3, 0.71, False),  # would pass 1.0
        ([], 0.30000000000000004, 0.7, True),  # 0.1 + 0.2 + 0.7 ends exactly at 1.0 on the grid
        ([(0.2, 0.1), (0.6, 0.1)], 0.2 + 0.1, 0.3, True),
        ([(0.2, 0.1), (0.6, 0.1)], 0.3, 0.3, True),  # a start stored as 0.3 touches 0.2 + 0.1
        ([(0.2, 0.1), (0.6, 0.1)], 0.3, 0.31, False),
        ([(0.2, 0.1)], 0.299999, 0.1, False),  # one millionth into the slice before
        ([(0.6, 0.1)], 0.3, 0.1, True),  # ramp-down always fits
        ([(0.6, 0.1)], 0.3, 0.0, True),
        ([(0.4, 0.0)], 0.3, 0.5, True),  # an empty slice reserves nothing
    ],
)
def test_can_grow__neighbouring_slices__refused_on_overlap_or_past_end(
    others: list[tuple[float, float]], start: float, new_width: float, expected: bool
) -> None:
    assert can_grow(others, start, new_width) is expected


# --- rollouts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("coverage", [0.0, 0.05, 0.3, 0.5, 0.99, 1.0])
def test_in_rollout__coverage__share_of_units_in_matches(coverage: float) -> None:
    share = sum(in_rollout("new-nav", u, coverage) for u in UNIT_IDS) / N_UNITS
    assert share == pytest.approx(coverage, abs=0.005)
    if coverage in (0.0, 1.0):
        assert share == coverage


def test_in_rollout__coverage_raised__units_already_in_stay_in() -> None:
    for unit_id in UNIT_IDS[:20_000]:
        states = [in_rollout("new-nav", unit_id, c) for c in (0.1, 0.5, 0.9, 1.0)]
        assert states == sorted(states)  # False... then True...: never out once in


def test_in_rollout__any_unit__growthbook_rule_with_the_feature_key_as_seed() -> None:
    for unit_id in UNIT_IDS[:1000]:
        assert in_rollout("new-nav", unit_id, 0.3) is (bucket("new-nav", unit_id, 2) <= 0.3)


def test_in_rollout__bucket_equal_to_coverage__included_as_the_specification_says() -> None:
    # GrowthBook's isIncludedInRollout includes n <= coverage (its Python SDK 4.0.0 uses <)
    unit_id = next(u for u in UNIT_IDS if bucket("new-nav", u, 2) == 0.3)
    assert in_rollout("new-nav", unit_id, 0.3) is True
    assert in_rollout("new-nav", unit_id, 0.2999) is False


def test_in_rollout__zero_coverage_or_empty_unit__never_in() -> None:
    assert not any(in_rollout("new-nav", u, 0.0) for u in UNIT_IDS[:2000])
    assert in_rollout("new-nav", "", 1.0) is False


def test_in_rollout__two_features__independent() -> None:
    table = np.zeros((2, 2))
    for unit_id in UNIT_IDS:
        table[int(in_rollout("new-nav", unit_id, 0.5)), int(in_rollout("dark-mode", unit_id, 0.3))] += 1
    assert stats.chi2_contingency(table).pvalue > P_FLOOR
