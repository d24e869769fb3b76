"""Analysis: raw events to finished results, against a plain scan and against pandas, same run.

Generates an experiment straight into a throw-away embedded ClickHouse (``INSERT ... SELECT`` from
``numbers()``, so generation happens in ClickHouse): 3 variants, 1-2 exposures per unit (0.3% of units
also see a second variant), and for 1M and 10M events (~1 unit per 10 events) four event names around
each unit's first exposure (a third of them before it, for CUPED). Five metrics: a conversion and a
capped CUPED revenue (primary, with daily time series), a ratio (revenue per order), page views and
errors (guardrail).

Three timings on the same rows, each the best of a few interleaved runs:

* **refresh**: what ``experiment_results_refresh`` does minus the ORM: ``rollup_run`` (the two
  roll-up statements) and ``results_document`` (the statistics engine, SRM, corrections, time series);
* **scan**: ``SELECT count(), sum(value) FROM events``, the floor of any query over those rows;
* **pandas**: the seed's way done well: the raw rows (events through ``events_dedup``, exposures)
  read as Arrow into DataFrames, then the same semantics in pandas (first exposure, exclusions,
  windows, caps, CUPED covariates, ratio, daily cumulative sums) and the same statistics. Its totals
  are checked against the roll-up's, so both compute the same thing.

Tables are ``OPTIMIZE ... FINAL``-ed after loading: the steady state background merges reach, where
FINAL costs nothing. The refresh over freshly inserted, unmerged parts is reported too.
"""

import datetime as dt
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from bench.common import Result, embedded_clickhouse

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
UNTIL = START + dt.timedelta(days=21)
DAY_MS = 86_400_000
SIZES = [int(s) for s in os.environ.get("BENCH_ANALYZE_EVENTS", "1000000,10000000").split(",")]
ROUNDS = int(os.environ.get("BENCH_ANALYZE_ROUNDS", "3"))


def _spec_and_plan():
    from analytics.results.analysis import MetricAnalysis
    from analytics.rollup import Measure, MetricSpec, RollupSpec
    from analytics.stats import AnalysisOptions

    revenue = Measure("purchase", "sum", cap=200.0)
    orders = Measure("purchase", "count")
    metrics = (
        MetricSpec(
            "conversion", "binomial", Measure("purchase", "binomial", window_hours=72), timeseries=True
        ),
        MetricSpec("revenue", "sum", revenue, cuped=True, cuped_lookback_days=7, timeseries=True),
        MetricSpec("revenue_per_order", "ratio", revenue, denominator=orders),
        MetricSpec("page_views", "count", Measure("page_view", "count", window_hours=168)),
        MetricSpec("errors", "count", Measure("error", "count")),
    )
    roles = {"conversion": "primary", "revenue": "primary", "errors": "guardrail"}
    plan = [
        MetricAnalysis(
            key=m.key,
            name=m.key,
            role=roles.get(m.key, "secondary"),
            type=m.type,
            options=AnalysisOptions(
                cuped=m.cuped, binomial=m.type == "binomial", higher_is_better=m.key != "errors"
            ),
        )
        for m in metrics
    ]
    spec = RollupSpec(
        experiment="bench",
        variants=("control", "a", "b"),
        until=UNTIL,
        metrics=metrics,
        environments=("production",),  # as the service passes an experiment's analysed environments
    )
    return spec, plan


def _generate(events: int) -> None:
    """Exposures for ~events/10 units and ``events`` events, generated inside ClickHouse."""
    from analytics import clickhouse as ch

    units = max(events // 10, 100)
    ch.command("TRUNCATE TABLE events")
    ch.command("TRUNCATE TABLE exposures")
    # A unit's t0 (start + cityHash64(u, 2) % 14 days) and variant (cityHash64(u, 1) % 3) are
    # functions of its number u, so its events can be placed around its t0.
    ch.command(
        "INSERT INTO exposures (experiment, variant, unit_id, timestamp, received_at, environment, attributes) "
        "SELECT 'bench', ['control', 'a', 'b'][1 + cityHash64(u, 1) % 3], concat('user-', toString(u)), "
        "{start:DateTime64(3, 'UTC')} + toIntervalMillisecond(cityHash64(u, 2) % (14 * 86400000)) + toIntervalMillisecond(r * 3600000), now64(3), 'production', map() "
        "FROM (SELECT number AS u, arrayJoin(range(1 + cityHash64(number, 9) % 2)) AS r FROM numbers({units:UInt64}))",
        {"start": START, "units": units},
    )
    ch.command(  # 0.3% of units also see another variant: excluded, counted
        "INSERT INTO exposures (experiment, variant, unit_id, timestamp, received_at, environment, attributes) "
        "SELECT 'bench', ['control', 'a', 'b'][1 + (cityHash64(u, 1) + 1) % 3], concat('user-', toString(u)), "
        "{start:DateTime64(3, 'UTC')} + toIntervalMillisecond(cityHash64(u, 2) % (14 * 86400000)) + toIntervalHour(5), now64(3), 'production', map() "
        "FROM (SELECT number AS u FROM numbers({units:UInt64})) WHERE cityHash64(u, 4) % 1000 < 3",
        {"start": START, "units": units},
    )
    ch.command(
        "INSERT INTO events (event_id, name, unit_id, value, timestamp, received_at, environment, properties) "
        "SELECT generateUUIDv4(number), "
        "['page_view', 'page_view', 'page_view', 'page_view', 'purchase', 'purchase', 'add_to_cart', 'error']"
        "[1 + cityHash64(number, 5) % 8], concat('user-', toString(u)), "
        "round((cityHash64(number, 6) % 10000) / 100 * (1 + 0.05 * (cityHash64(u, 1) % 3)), 2), "
        "{start:DateTime64(3, 'UTC')} + toIntervalMillisecond(cityHash64(u, 2) % (14 * 86400000)) "
        "+ toIntervalMillisecond(toInt64(cityHash64(number, 7) % (21 * 86400000)) - 7 * 86400000), "
        "now64(3), 'production', map() "
        "FROM (SELECT number, cityHash64(number, 8) % {units:UInt64} AS u FROM numbers({events:UInt64}))",
        {"start": START, "units": units, "events": events},
        settings={"max_insert_threads": 2, "max_block_size": 1_000_000},
    )


def _optimize() -> None:
    from analytics import clickhouse as ch

    ch.command("OPTIMIZE TABLE events FINAL")
    ch.command("OPTIMIZE TABLE exposures FINAL")


def _refresh(spec, plan) -> dict[str, Any]:
    from analytics.results.analysis import results_document
    from analytics.rollup import rollup_run

    rollup = rollup_run(spec)
    return {
        "rollup": rollup,
        "document": results_document(
            experiment=spec.experiment, rollup=rollup, metrics=plan, weights=[1, 1, 1], srm_threshold=0.001,
            correction="holm", computed_at=spec.until,
        ),
    }  # fmt: skip


SCAN_SQL = "SELECT count(), sum(value) FROM events"
# What any per-unit analysis has to read at least: the four columns, the unit hashed (context only).
COLUMNS_SQL = "SELECT count(), sum(value), sum(cityHash64(unit_id)), max(timestamp), sum(length(name)) FROM events_dedup"
# The least work any exact analysis does: every needed event joined to its unit's first exposure (the
# conversion windows are relative to it), nothing computed. Above this, the roll-up adds the per-unit
# grouping, windows, caps, covariates and daily series.
JOIN_SQL = (
    "SELECT count(), sum(e.ts - u.t0) FROM (SELECT cityHash64(unit_id) AS unit_key, "
    "toUnixTimestamp64Milli(timestamp) AS ts FROM events_dedup WHERE name IN {names:Array(String)}) AS e "
    "INNER JOIN (SELECT cityHash64(unit_id) AS unit_key, toUnixTimestamp64Milli(min(timestamp)) AS t0 "
    "FROM exposures WHERE experiment = {experiment:String} GROUP BY unit_key) AS u ON e.unit_key = u.unit_key"
)


def _scan() -> None:
    from analytics import clickhouse as ch

    ch.query(SCAN_SQL)


def _arrow_frame(sql: str, params: dict):
    """Raw rows as a pandas DataFrame, through Arrow (the fastest way chDB hands rows to pandas)."""
    import pyarrow as pa

    from analytics import clickhouse as ch
    from analytics.clickhouse.params import as_text, prepare

    backend = ch.get_backend()
    data = backend.engine.execute(
        sql, fmt="Arrow", params=as_text(prepare(sql, params)), database=backend.database, timeout=600
    )
    return pa.ipc.open_file(pa.BufferReader(data)).read_pandas()


def pandas_refresh(spec, plan) -> dict[str, Any]:
    """The same roll-up in pandas over the raw rows, then the same statistics."""
    import numpy as np
    import pandas as pd

    from analytics.results.analysis import results_document
    from analytics.rollup.query import stats_class
    from analytics.rollup.refresh import DailyStats, Rollup
    from analytics.stats import CupedStats, RatioStats, SampleStats

    exposures = _arrow_frame(
        "SELECT unit_id, variant, toUnixTimestamp64Milli(timestamp) AS ts FROM exposures "
        "WHERE experiment = {experiment:String}",
        {"experiment": spec.experiment},
    )
    events = _arrow_frame(
        "SELECT unit_id, name, toUnixTimestamp64Milli(timestamp) AS ts, value FROM events_dedup "
        "WHERE name IN {names:Array(String)} AND timestamp < {until:DateTime64(3, 'UTC')}",
        {"names": sorted({m.event for metric in spec.metrics for m in metric.measures}), "until": spec.until},
    )
    exposures["variant"] = exposures["variant"].astype(str)
    per_unit = exposures.groupby("unit_id").agg(
        t0=("ts", "min"), first=("variant", "min"), last=("variant", "max")
    )
    multiple = int((per_unit["first"] != per_unit["last"]).sum())
    units = per_unit[(per_unit["first"] == per_unit["last"]) & per_unit["first"].isin(spec.variants)]
    units = units.rename(columns={"first": "variant"})[["t0", "variant"]]
    until_ms = spec.until_ms
    units["entry_day"] = np.minimum(units["t0"], until_ms) // DAY_MS
    joined = events.merge(units, left_on="unit_id", right_index=True, how="inner")
    joined["day"] = joined["ts"] // DAY_MS

    def post(measure) -> pd.Series:
        mask = (joined["name"] == measure.event) & (joined["ts"] >= joined["t0"])
        if measure.window_hours is not None:
            mask &= joined["ts"] < joined["t0"] + measure.window_hours * 3_600_000
        return joined["value"].where(mask, 0.0) if measure.kind == "sum" else mask.astype(float)

    def pre(measure, days: int) -> pd.Series:
        mask = (joined["name"] == measure.event) & (joined["ts"] >= joined["t0"] - days * DAY_MS)
        mask &= joined["ts"] < joined["t0"]
        return joined["value"].where(mask, 0.0) if measure.kind == "sum" else mask.astype(float)

    def shape(measure, raw):
        if measure.kind == "binomial":
            return (raw > 0).astype(float)
        return raw if measure.cap is None else np.minimum(raw, measure.cap)

    columns, covariates = {}, {}
    for i, metric in enumerate(spec.metrics):
        for j, measure in enumerate(metric.measures):
            columns[(i, j)] = post(measure)
            if metric.cuped:
                covariates[(i, j)] = pre(measure, metric.cuped_lookback_days)
    frame = pd.DataFrame({f"y{i}_{j}": s for (i, j), s in columns.items()})
    frame = frame.assign(**{f"x{i}_{j}": s for (i, j), s in covariates.items()}, unit_id=joined["unit_id"])
    sums = frame.groupby("unit_id").sum()
    values = units.join(sums, how="left").fillna(0.0)
    n = values.groupby("variant").size().reindex(spec.variants, fill_value=0)

    def stats_of(metric, i, table, counts) -> list:
        out = []
        for variant in spec.variants:
            rows = table[table["variant"] == variant]
            m = shape(metric.measure, rows[f"y{i}_0"]).to_numpy()
            if metric.denominator is not None:
                d = shape(metric.denominator, rows[f"y{i}_1"]).to_numpy()
                out.append((variant, RatioStats.from_values(m, d)))
            elif metric.cuped:
                x = shape(metric.measure, rows[f"x{i}_0"]).to_numpy()
                out.append((variant, CupedStats.from_values(m, x)))
            else:
                out.append((variant, SampleStats.from_values(m)))
        return out

    rollup = Rollup(spec=spec, units={v: int(n[v]) for v in spec.variants}, multiple_exposures=multiple,
                    unknown_variant_units=0, first_exposure_at=None, last_exposure_at=None, last_event_at=None)  # fmt: skip
    for i, metric in enumerate(spec.metrics):
        rollup.totals[metric.key] = stats_of(metric, i, values, n)
    # Daily cumulative statistics: each unit's running totals per day, then per-day increments.
    days = range(int(units["entry_day"].min()), until_ms // DAY_MS + 1)
    for i, metric in enumerate(spec.metrics):
        if not metric.timeseries:
            continue
        daily_frame = pd.DataFrame(
            {"unit_id": joined["unit_id"], "day": joined["day"], "inc": columns[(i, 0)]}
        )
        daily_frame = (
            daily_frame[daily_frame["inc"] != 0].groupby(["unit_id", "day"], as_index=False)["inc"].sum()
        )
        daily_frame = daily_frame.sort_values(["unit_id", "day"])
        daily_frame["value"] = shape(metric.measure, daily_frame.groupby("unit_id")["inc"].cumsum())
        previous = daily_frame.groupby("unit_id")["value"].shift(fill_value=0.0)
        daily_frame["d_sum"] = daily_frame["value"] - previous
        daily_frame["d_squares"] = daily_frame["value"] ** 2 - previous**2
        daily_frame = daily_frame.join(units["variant"], on="unit_id")
        if metric.cuped:
            x = shape(metric.measure, values[f"x{i}_0"])
            daily_frame["d_products"] = daily_frame["d_sum"] * daily_frame["unit_id"].map(x)
            entries = values.assign(x=x, x2=x * x).groupby(["variant", "entry_day"])[["x", "x2"]].sum()
        increments = daily_frame.groupby(["variant", "day"]).sum(numeric_only=True)
        entered = units.groupby(["variant", "entry_day"]).size()
        series, running = (
            [],
            {v: dict.fromkeys(("n", "s", "ss", "x", "xx", "xy"), 0.0) for v in spec.variants},
        )
        for day in days:
            for variant in spec.variants:
                r = running[variant]
                r["n"] += entered.get((variant, day), 0)
                if (variant, day) in increments.index:
                    row = increments.loc[(variant, day)]
                    r["s"] += row["d_sum"]
                    r["ss"] += row["d_squares"]
                    r["xy"] += row.get("d_products", 0.0)
                if metric.cuped and (variant, day) in entries.index:
                    r["x"] += entries.loc[(variant, day), "x"]
                    r["xx"] += entries.loc[(variant, day), "x2"]
            cls = stats_class(metric)
            stats = [
                (v, cls(n=int(r["n"]), sum=r["s"], sum_squares=r["ss"], pre_sum=r["x"], pre_sum_squares=r["xx"],
                        sum_products=r["xy"]) if cls is CupedStats else cls(n=int(r["n"]), sum=r["s"],
                                                                            sum_squares=r["ss"]))
                for v, r in running.items()
            ]  # fmt: skip
            series.append(DailyStats(date=dt.date(1970, 1, 1) + dt.timedelta(days=day), variants=stats))
        rollup.daily[metric.key] = series
    document = results_document(experiment=spec.experiment, rollup=rollup, metrics=plan, weights=[1, 1, 1],
                                srm_threshold=0.001, correction="holm", computed_at=spec.until)  # fmt: skip
    return {"rollup": rollup, "document": document}


def _check_same(ours: dict, theirs: dict) -> None:
    """pandas and the roll-up computed the same thing (else the comparison would mean nothing)."""
    import math
    from dataclasses import fields

    a, b = ours["rollup"], theirs["rollup"]
    assert a.units == b.units and a.multiple_exposures == b.multiple_exposures, (a.units, b.units)
    for key in a.totals:
        for (variant, x), (_, y) in zip(a.totals[key], b.totals[key], strict=True):
            for f in fields(x):
                assert math.isclose(getattr(x, f.name), getattr(y, f.name), rel_tol=1e-9, abs_tol=1e-6), (
                    key, variant, f.name, getattr(x, f.name), getattr(y, f.name),
                )  # fmt: skip
    for key in a.daily:
        assert len(a.daily[key]) == len(b.daily[key]), key
        for x_day, y_day in zip(a.daily[key], b.daily[key], strict=True):
            for (variant, x), (_, y) in zip(x_day.variants, y_day.variants, strict=True):
                assert math.isclose(x.sum_squares, y.sum_squares, rel_tol=1e-9, abs_tol=1e-6), (key, variant)
                assert x.n == y.n, (key, x_day.date, variant, x.n, y.n)


def _cpu_seconds() -> float:
    """CPU time of this process, every thread (chDB's included): less sensitive to other load than wall."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _best(action: Callable[[], Any], rounds: int) -> tuple[float, Any, float]:
    """Fastest wall time of ``rounds`` runs, the last answer, and the least CPU time of a run."""
    best = best_cpu = float("inf")
    answer = None
    for _ in range(rounds):
        started, cpu = time.perf_counter(), _cpu_seconds()
        answer = action()
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, _cpu_seconds() - cpu)
    return best, answer, best_cpu


def run() -> list[Result]:
    import django

    django.setup()

    from analytics import clickhouse as ch

    spec, plan = _spec_and_plan()
    join_params = {
        "names": sorted({m.event for metric in spec.metrics for m in metric.measures}),
        "experiment": spec.experiment,
    }
    results: list[Result] = []
    with embedded_clickhouse(prefix="bench-analyze-", timeout=600):
        for size in SIZES:
            label = f"{size / 1e6:g}M events"
            started = time.perf_counter()
            _generate(size)
            print(f"{label}: generated in {time.perf_counter() - started:.1f} s", flush=True)
            fresh, _, _ = _best(lambda: _refresh(spec, plan), 1)
            _optimize()
            _refresh(spec, plan)  # warm-up
            scan = refresh = read = join = refresh_cpu = float("inf")
            ours = None
            for _ in range(ROUNDS):  # interleaved, so all see the same machine
                scan = min(scan, _best(_scan, 1)[0])
                read = min(read, _best(lambda: ch.query(COLUMNS_SQL), 1)[0])
                join = min(join, _best(lambda: ch.query(JOIN_SQL, join_params), 1)[0])
                elapsed, ours, cpu = _best(lambda: _refresh(spec, plan), 1)
                refresh, refresh_cpu = min(refresh, elapsed), min(refresh_cpu, cpu)
            pandas_seconds, theirs, pandas_cpu = _best(
                lambda: pandas_refresh(spec, plan), 1 if size > 2_000_000 else 2
            )
            _check_same(ours, theirs)
            rollup = ours["rollup"]
            print(
                f"{label}: {sum(rollup.units.values()):,} units; refresh {refresh * 1000:,.0f} ms "
                f"(unmerged parts: {fresh * 1000:,.0f} ms), scan {scan * 1000:,.0f} ms "
                f"({refresh / scan:.1f}x), reading the 4 columns {read * 1000:,.0f} ms "
                f"({refresh / read:.1f}x), joining events to first exposures {join * 1000:,.0f} ms "
                f"({join / scan:.1f}x the scan), pandas {pandas_seconds * 1000:,.0f} ms "
                f"({pandas_seconds / refresh:.1f}x slower than the refresh); pandas and roll-up agree. "
                f"CPU time: refresh {refresh_cpu:.2f} s, pandas {pandas_cpu:.2f} s; load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
                flush=True,
            )
            results += [
                Result(entry="analyze", measured=f"full refresh (roll-up + stats), {label}",
                       value=refresh * 1000, baseline=f"{SCAN_SQL}, {label}",
                       baseline_value=scan * 1000, unit="ms", higher_is_better=False,
                       goal="ratio <= 3" if size >= 10_000_000 else ""),
                Result(entry="analyze", measured=f"full refresh (roll-up + stats), {label}",
                       value=refresh * 1000, baseline=f"pandas over the raw rows, same results, {label}",
                       baseline_value=pandas_seconds * 1000, unit="ms", higher_is_better=False,
                       goal="ratio <= 0.1 (10x faster)" if size >= 10_000_000 else ""),
                Result(entry="analyze", measured=f"full refresh (roll-up + stats), {label}",
                       value=refresh * 1000, baseline=f"reading unit_id, name, timestamp, value, {label}",
                       baseline_value=read * 1000, unit="ms", higher_is_better=False),
                Result(entry="analyze", measured=f"events joined to first exposures, nothing computed, {label}",
                       value=join * 1000, baseline=f"{SCAN_SQL}, {label}",
                       baseline_value=scan * 1000, unit="ms", higher_is_better=False),
                Result(entry="analyze", measured=f"full refresh CPU time (all threads), {label}",
                       value=refresh_cpu * 1000, baseline=f"pandas CPU time, {label}",
                       baseline_value=pandas_cpu * 1000, unit="ms", higher_is_better=False),
                Result(entry="analyze", measured=f"full refresh, unmerged parts, {label}",
                       value=fresh * 1000, baseline=f"{SCAN_SQL}, {label}",
                       baseline_value=scan * 1000, unit="ms", higher_is_better=False),
            ]  # fmt: skip
    return results
