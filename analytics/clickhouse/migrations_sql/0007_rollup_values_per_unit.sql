-- The incremental roll-up's values, one row per unit (docs/analysis.md, "Incremental refresh").
--
-- 0004 and 0006 kept a row per unit and raw measure (about ten per unit) plus, per event name, every
-- counted event's key and content hashes: a state as large as the events, scattered by unit, so that
-- copying the touched units out read all of it and cost more than a cold refresh. A unit's values now
-- sit in one row, and a 128-bit filter replaces the hashes. State format 4 (the analysis code)
-- recomputes every experiment in full once, so the old tables (rollup_values, rollup_scratch_values) are
-- dropped, not converted. The new tables have names of their own: on a replicated cluster a table
-- created again under a dropped one's name would meet its replication path, which ClickHouse removes
-- from Keeper only some minutes after an asynchronous DROP.
--
-- rollup_unit_values: vals holds an element per raw measure or covariate (key: its value_key): the raw
-- value in the window before caps and 0/1 conversions (total), the same split by the events' UTC
-- days (days, increments: what a daily series needs), the latest such event before the analysis
-- time (last_ms) and the earliest at or after it (pending_ms). pending_ms (the row's) is the least
-- of its elements': a refresh after that time recomputes the unit. seen_low and seen_high: the
-- filter of counted events (three bits per event from its key hash), so that an arrival that might
-- replay one is recognised without reading events. ReplacingMergeTree(version): the newest row wins.
--
-- day: the UTC day of the unit's t0 when the row was written. ORDER BY (experiment, units_key, day,
-- unit_id): the units that receive most new events (those exposed recently) sit together, so looking
-- the touched units up by (day, unit_id) reads a few days' granules, not the whole state; granules
-- of 256 rows, so that the few touched units of the other days (late exposures, replays) cost a
-- small granule each. A unit
-- whose t0 moves to another day is written under the new one, and an empty row of the same version
-- replaces its row under the old one; readers of the whole state join each row to the unit's
-- current t0.
DROP TABLE IF EXISTS {database}.rollup_values;

DROP TABLE IF EXISTS {database}.rollup_scratch_values;

CREATE TABLE IF NOT EXISTS {database}.rollup_unit_values
(
    experiment LowCardinality(String),
    units_key String,
    unit_id String,
    day Int32,
    vals Array(Tuple(
        key LowCardinality(String),
        total Float64,
        days Array(Int32),
        increments Array(Float64),
        last_ms Int64,
        pending_ms Int64
    )),
    seen_low UInt64,
    seen_high UInt64,
    pending_ms Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (experiment, units_key, day, unit_id)
SETTINGS index_granularity = 256
COMMENT 'Incremental roll-up: each unit''s raw measure values, one row per unit; read FINAL';

-- rollup_scratch_unit_values: the touched units' rows before (phase 0) and after (phase 1) one refresh;
-- changed marks a phase 1 row that differs from phase 0 (the only ones written back). Dropped a day
-- later.
CREATE TABLE IF NOT EXISTS {database}.rollup_scratch_unit_values
(
    experiment LowCardinality(String),
    refresh_id UInt64,
    phase UInt8,
    unit_id String,
    day Int32,
    vals Array(Tuple(
        key LowCardinality(String),
        total Float64,
        days Array(Int32),
        increments Array(Float64),
        last_ms Int64,
        pending_ms Int64
    )),
    seen_low UInt64,
    seen_high UInt64,
    changed UInt8,
    created_at DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (experiment, refresh_id, phase, unit_id)
TTL created_at + INTERVAL 1 DAY
COMMENT 'Incremental roll-up: touched units'' values before and after a refresh; dropped after a day';
