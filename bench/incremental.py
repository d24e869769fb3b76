"""Incremental refresh against the cold refresh, same rows, same run (docs/analysis.md, section 18).

For each history size (``BENCH_INCREMENTAL_EVENTS``, default 1M, 10M and 30M events; ~1 unit per 10
events, the experiment, metrics and generator of ``bench.analyze``), all received a day ago:

1. the first refresh builds the per-unit state (a full refresh);
2. ``BENCH_INCREMENTAL_NEW`` (default 1%) new events arrive, as a live experiment receives them: from
   units active now (the experiment's last two days of entrants), a tenth of them from new units with
   their first exposures, plus late exposures that move some units' t0 earlier or add a second
   variant, and replays of old events;
3. timed, best of ``BENCH_INCREMENTAL_ROUNDS`` rounds of steps 2 and 3: the incremental refresh from
   the state the previous refresh left (what the 5-minute schedule does), and the cold refresh (``rollup_run``, every event read) over the
   same rows. Both include the statistics engine (``results_document``). Their answers are checked
   equal (units and every total), so the two compute the same thing.

Rows: incremental / cold at each size (goal at 10M: <= 0.15), and incremental at each size /
incremental at the smallest (goal: <= 1.5). Tables are merged (``OPTIMIZE ... FINAL``) after loading
the history, then the new rows stay in their own fresh parts, as under live ingestion.
"""

import datetime as dt
import math
import os
import time
from dataclasses import fields

from bench.analyze import START, UNTIL, _spec_and_plan
from bench.common import Result, embedded_clickhouse

SIZES = [int(s) for s in os.environ.get("BENCH_INCREMENTAL_EVENTS", "1000000,10000000,30000000").split(",")]
NEW = float(os.environ.get("BENCH_INCREMENTAL_NEW", "0.01"))
ROUNDS = int(os.environ.get("BENCH_INCREMENTAL_ROUNDS", "3"))
HISTORY_RECEIVED = UNTIL - dt.timedelta(days=1)
READ_AT = UNTIL  # the incremental refresh's start; the new rows arrive just before it
MARGIN = dt.timedelta(minutes=5)
DAY_MS = 86_400_000


def _generate(events: int) -> None:
    """The history of ``bench.analyze`` (same units, t0s, variants, events), received a day ago."""
    from analytics import clickhouse as ch

    units = max(events // 10, 100)
    params = {"start": START, "units": units, "events": events, "received": HISTORY_RECEIVED}
    ch.command("TRUNCATE TABLE events")
    ch.command("TRUNCATE TABLE exposures")
    ch.command(
        "INSERT INTO exposures (experiment, variant, unit_id, timestamp, received_at, environment, attributes) "
        "SELECT 'bench', ['control', 'a', 'b'][1 + cityHash64(u, 1) % 3], concat('user-', toString(u)), "
        "{start:DateTime64(3, 'UTC')} + toIntervalMillisecond(cityHash64(u, 2) % (14 * 86400000)) "
        "+ toIntervalMillisecond(r * 3600000), {received:DateTime64(3, 'UTC')}, 'production', map() "
        "FROM (SELECT number AS u, arrayJoin(range(1 + cityHash64(number, 9) % 2)) AS r FROM numbers({units:UInt64}))",
        {key: params[key] for key in ("start", "units", "received")},
    )
    ch.command(
        "INSERT INTO events (event_id, name, unit_id, value, timestamp, received_at, environment, properties) "
        "SELECT generateUUIDv4(number), "
        "['page_view', 'page_view', 'page_view', 'page_view', 'purchase', 'purchase', 'add_to_cart', 'error']"
        "[1 + cityHash64(number, 5) % 8], concat('user-', toString(u)), "
        "round((cityHash64(number, 6) % 10000) / 100 * (1 + 0.05 * (cityHash64(u, 1) % 3)), 2), "
        "{start:DateTime64(3, 'UTC')} + toIntervalMillisecond(cityHash64(u, 2) % (14 * 86400000)) "
        "+ toIntervalMillisecond(toInt64(cityHash64(number, 7) % (21 * 86400000)) - 7 * 86400000), "
        "{received:DateTime64(3, 'UTC')}, 'production', map() "
        "FROM (SELECT number, cityHash64(number, 8) % {units:UInt64} AS u FROM numbers({events:UInt64}))",
        params,
        settings={"max_insert_threads": 2, "max_block_size": 1_000_000},
    )
    ch.command("OPTIMIZE TABLE events FINAL")
    ch.command("OPTIMIZE TABLE exposures FINAL")


def _arrive(events: int, batch: int, received: dt.datetime) -> int:
    """New rows (the ``batch``-th arrival), received at ``received``: how many events."""
    from analytics import clickhouse as ch

    units = max(events // 10, 100)
    new = max(int(events * NEW), 10)
    new_units = max(units // 100, 10)  # entrants since the last refresh
    last_days = {"start": START + dt.timedelta(days=12), "units": units, "received": received}
    # Units active now: those that entered in the experiment's last two days (t0 on days 12-13)
    # send 90% of the new events; 10% come from new units, whose first exposures arrive too.
    ch.command(
        "INSERT INTO exposures (experiment, variant, unit_id, timestamp, received_at, environment, attributes) "
        "SELECT 'bench', ['control', 'a', 'b'][1 + cityHash64(u, 1) % 3], concat('new-', toString({batch:UInt32}), '-', toString(u)), "
        "{start:DateTime64(3, 'UTC')} + toIntervalMillisecond(cityHash64(u, 2) % (2 * 86400000)), "
        "{received:DateTime64(3, 'UTC')}, 'production', map() FROM (SELECT number AS u FROM numbers({new_units:UInt64}))",
        {"start": last_days["start"], "received": received, "new_units": new_units, "batch": batch},
    )
    ch.command(  # late exposures: a hundredth of the new units' count move t0 earlier, as many switch
        "INSERT INTO exposures (experiment, variant, unit_id, timestamp, received_at, environment, attributes) "
        "SELECT 'bench', ['control', 'a', 'b'][1 + (cityHash64(u, 1) + number % 2) % 3], concat('user-', toString(u)), "
        "{start:DateTime64(3, 'UTC')}, {received:DateTime64(3, 'UTC')}, 'production', map() "
        "FROM (SELECT number, cityHash64(number, 11, {batch:UInt32}) % {units:UInt64} AS u FROM numbers({late:UInt64}))",
        {
            "start": START,
            "received": received,
            "units": units,
            "late": max(new_units // 50, 2),
            "batch": batch,
        },
    )
    ch.command(
        "INSERT INTO events (event_id, name, unit_id, value, timestamp, received_at, environment, properties) "
        "SELECT generateUUIDv4(number + 1000000000 * {batch:UInt32}), "
        "['page_view', 'page_view', 'page_view', 'page_view', 'purchase', 'purchase', 'add_to_cart', 'error']"
        "[1 + cityHash64(number, 5) % 8], "
        "if(number % 10 = 0, concat('new-', toString({batch:UInt32}), '-', toString(cityHash64(number, 3) % {new_units:UInt64})), "
        "concat('user-', toString(u))), round((cityHash64(number, 6) % 10000) / 100, 2), "
        "{until:DateTime64(3, 'UTC')} - toIntervalMillisecond(cityHash64(number, 7) % 86400000), "
        "{received:DateTime64(3, 'UTC')}, 'production', map() "
        # u: a unit whose t0 is in the last two days (cityHash64(u, 2) % 14 days >= 12 days)
        "FROM (SELECT number, arrayFirst(c -> cityHash64(c, 2) % (14 * 86400000) >= 12 * 86400000, "
        "arrayMap(k -> (cityHash64(number, 8, {batch:UInt32}) + k * 7919) % {units:UInt64}, range(64))) AS u "
        "FROM numbers({new:UInt64}))",
        {
            "until": UNTIL,
            "received": received,
            "units": units,
            "new_units": new_units,
            "new": new,
            "batch": batch,
        },
    )
    ch.command(  # replays: a thousandth of the new events are old events sent again, same event_id
        "INSERT INTO events (event_id, name, unit_id, value, timestamp, received_at, environment, properties) "
        "SELECT event_id, name, unit_id, value, timestamp, {received:DateTime64(3, 'UTC')}, environment, properties "
        "FROM events WHERE received_at < {received:DateTime64(3, 'UTC')} LIMIT {replays:UInt64}",
        {"received": received, "replays": max(new // 1000, 1)},
    )
    return new


def _document(spec, plan, rollup):
    from analytics.results.analysis import results_document

    return results_document(
        experiment=spec.experiment, rollup=rollup, metrics=plan, weights=[1, 1, 1], srm_threshold=0.001,
        correction="holm", computed_at=spec.until,
    )  # fmt: skip


def _check_same(incremental, cold) -> None:
    assert incremental.units == cold.units, (incremental.units, cold.units)
    assert incremental.multiple_exposures == cold.multiple_exposures
    for key, variants in cold.totals.items():
        for (variant, want), (_, got) in zip(variants, incremental.totals[key], strict=True):
            for f in fields(want):
                a, b = getattr(got, f.name), getattr(want, f.name)
                assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6), (key, variant, f.name, a, b)


def run() -> list[Result]:
    import django

    django.setup()

    from analytics import clickhouse as ch
    from analytics.rollup import rollup_run
    from analytics.rollup.incremental import rollup_refresh

    spec, plan = _spec_and_plan()
    results: list[Result] = []
    incremental_ms: dict[int, float] = {}
    with embedded_clickhouse(prefix="bench-incremental-", timeout=1200):
        for size in SIZES:
            label = f"{size / 1e6:g}M events"
            started = time.perf_counter()
            _generate(size)
            for table in (
                "rollup_units",
                "rollup_unit_values",
                "rollup_touched",
                "rollup_arrivals",
                "rollup_scratch_units",
                "rollup_scratch_unit_values",
            ):
                ch.command("TRUNCATE TABLE {table:Identifier}", {"table": table})
            first_at = HISTORY_RECEIVED + dt.timedelta(hours=1)
            begun = time.perf_counter()
            first = rollup_refresh(spec, previous=None, read_at=first_at, watermark=first_at - MARGIN)
            build = time.perf_counter() - begun
            print(f"{label}: generated in {begun - started:.1f} s, state built in {build:.1f} s", flush=True)
            incremental = cold = float("inf")
            state = first.state
            for round_ in range(ROUNDS):  # successive refreshes, each after its own arrivals
                read_at = READ_AT + round_ * dt.timedelta(minutes=5)
                new = _arrive(size, round_ + 1, read_at - dt.timedelta(seconds=30))
                begun = time.perf_counter()
                ours = rollup_refresh(spec, previous=state, read_at=read_at, watermark=read_at - MARGIN)
                _document(spec, plan, ours)
                incremental = min(incremental, time.perf_counter() - begun)
                assert ours.kind == "incremental", ours.kind
                state = ours.state
                begun = time.perf_counter()
                theirs = rollup_run(spec)
                _document(spec, plan, theirs)
                cold = min(cold, time.perf_counter() - begun)
            _check_same(ours, theirs)
            incremental_ms[size] = incremental * 1000
            print(
                f"{label}: {new:,} new events a refresh; incremental {incremental * 1000:,.0f} ms, cold {cold * 1000:,.0f} ms "
                f"({incremental / cold:.2f}); incremental and cold agree; load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
                flush=True,
            )
            results.append(
                Result(entry="incremental", measured=f"incremental refresh, {NEW * 100:g}% new events, {label}",
                       value=incremental * 1000, baseline=f"cold refresh of the same rows, {label}",
                       baseline_value=cold * 1000, unit="ms", higher_is_better=False,
                       goal="ratio <= 0.15" if size == 10_000_000 else "")
            )  # fmt: skip
        smallest = min(incremental_ms)
        for size, value in incremental_ms.items():
            if size == smallest:
                continue
            results.append(
                Result(entry="incremental", measured=f"incremental refresh, {size / 1e6:g}M events",
                       value=value, baseline=f"incremental refresh, {smallest / 1e6:g}M events",
                       baseline_value=incremental_ms[smallest], unit="ms", higher_is_better=False,
                       goal="ratio <= 1.5")
            )  # fmt: skip
    return results
