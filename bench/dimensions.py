"""Dimension breakdowns: the results per level of an attribute or of the entry day, against the full
refresh of the same experiment, same run.

The experiment and its rows are the ``analyze`` benchmark's (3 variants, five metrics, ~1 unit per 10
events), with a ``country`` attribute on every exposure: 30 countries of very different sizes
(``c0`` ... ``c29``, the k-th about 2k + 1 times the first), absent on 2% of the units. Timed, each the
best of a few interleaved runs:

* **breakdown**: ``rollup_breakdown`` (levels, units, metrics statements; every level at once) and
  the statistics of each level (``results_document`` per level): what ``GET .../results/?dimension=``
  computes on a cache miss, minus the ORM; by ``country`` (20 levels and ``__other__``) and by
  ``entry_day`` (14 levels);
* **refresh**: the full refresh of the whole experiment (``analyze``'s), the baseline.
"""

import os

from bench.analyze import _best, _generate, _optimize, _refresh, _spec_and_plan
from bench.common import Result, embedded_clickhouse

SIZES = [int(s) for s in os.environ.get("BENCH_DIMENSIONS_EVENTS", "1000000,10000000").split(",")]
ROUNDS = int(os.environ.get("BENCH_DIMENSIONS_ROUNDS", "3"))


def _attributes() -> None:
    """Give every exposure its unit's country (a function of the unit, so all its exposures agree)."""
    from analytics import clickhouse as ch

    ch.command(
        "ALTER TABLE exposures UPDATE attributes = if(cityHash64(unit_id, 3) % 50 = 0, map(), "
        "map('country', concat('c', toString(toUInt32(floor(sqrt(cityHash64(unit_id, 4) % 900))))))) "
        "WHERE 1",
        settings={"mutations_sync": 2},
    )


def _breakdown(spec, plan, dimension: str):
    from analytics.results.analysis import results_document
    from analytics.rollup.dimensions import rollup_breakdown

    breakdown = rollup_breakdown(spec, dimension)
    return [
        results_document(experiment=spec.experiment, rollup=rollup, metrics=plan, weights=[1, 1, 1],
                         srm_threshold=0.001, correction="holm", computed_at=spec.until)
        for _, rollup in breakdown.levels
    ]  # fmt: skip


def run() -> list[Result]:
    import django

    django.setup()

    spec, plan = _spec_and_plan()
    results: list[Result] = []
    with embedded_clickhouse(prefix="bench-dimensions-", timeout=600):
        for size in SIZES:
            label = f"{size / 1e6:g}M events"
            _generate(size)
            _attributes()
            _optimize()
            _refresh(spec, plan)  # warm-up
            refresh = country = day = float("inf")
            levels: dict[str, int] = {}
            for _ in range(ROUNDS):  # interleaved, so all see the same machine
                refresh = min(refresh, _best(lambda: _refresh(spec, plan), 1)[0])
                elapsed, documents, _ = _best(lambda: _breakdown(spec, plan, "country"), 1)
                country, levels["country"] = min(country, elapsed), len(documents)
                elapsed, documents, _ = _best(lambda: _breakdown(spec, plan, "entry_day"), 1)
                day, levels["entry_day"] = min(day, elapsed), len(documents)
            print(
                f"{label}: refresh {refresh * 1000:,.0f} ms; breakdown by country ({levels['country']} "
                f"levels) {country * 1000:,.0f} ms ({country / refresh:.2f}x), by entry_day "
                f"({levels['entry_day']} levels) {day * 1000:,.0f} ms ({day / refresh:.2f}x); load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
                flush=True,
            )
            results += [
                Result(entry="dimensions", measured=f"breakdown by country, {levels['country']} levels, {label}",
                       value=country * 1000, baseline=f"full refresh of the experiment, {label}",
                       baseline_value=refresh * 1000, unit="ms", higher_is_better=False),
                Result(entry="dimensions", measured=f"breakdown by entry_day, {levels['entry_day']} levels, {label}",
                       value=day * 1000, baseline=f"full refresh of the experiment, {label}",
                       baseline_value=refresh * 1000, unit="ms", higher_is_better=False),
            ]  # fmt: skip
    return results
