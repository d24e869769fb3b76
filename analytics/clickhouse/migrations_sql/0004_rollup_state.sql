-- Per-unit state of the incremental roll-up (docs/analysis.md, "Incremental refresh"). A refresh
-- recomputes the rows of the units that new exposures and events touched and aggregates these tables,
-- so the final aggregation reads units, not events.
--
-- Engine: ReplacingMergeTree(version), read FINAL. A refresh replaces a unit's row by inserting a new
-- one; version is the refresh's read time (milliseconds), so a row computed from a later read of the
-- data wins over one computed earlier, even when two refreshes of an experiment overlap.
--
-- rollup_units: each unit's first exposure t0 and variant index (-1: several variants, 0: a variant
-- the experiment does not have), as of the exposures read. units_key hashes what decides them (the
-- experiment's variants and analysed environments) and the state's generation, so a changed
-- definition or a full recompute writes beside the old rows, never into them.
--
-- ORDER BY (experiment, units_key, unit_id): a refresh reads one experiment's current units, and
-- looks touched units up by unit_id. No partitioning: rows are replaced, never dropped by time.
CREATE TABLE IF NOT EXISTS {database}.rollup_units
(
    experiment LowCardinality(String),
    units_key String,
    unit_id String,
    t0_ms Int64,
    variant_index Int16,
    last_exposure_ms Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (experiment, units_key, unit_id)
COMMENT 'Incremental roll-up: each unit''s first exposure and variant; read FINAL';

-- rollup_values: one row per (unit, raw measure): the count or sum of the unit's events in the
-- measure's window before caps and 0/1 conversions (total), the same split by UTC day of the events
-- (days, increments: what the daily series needs), the unit's latest such event before the analysis
-- time (last_ms) and its earliest one at or after it (pending_ms: the refresh after that time must
-- recompute the unit). A CUPED covariate is a row of its own (total only). value_key hashes the
-- units_key with the measure's event, kind and window (or the covariate's look-back); caps and the
-- statistics are applied when aggregating, so changing them needs no recompute.
--
-- ORDER BY (experiment, value_key, unit_id): the aggregation reads one experiment's keys, the
-- recompute looks units up.
CREATE TABLE IF NOT EXISTS {database}.rollup_values
(
    experiment LowCardinality(String),
    value_key String,
    unit_id String,
    total Float64,
    days Array(Int32),
    increments Array(Float64),
    last_ms Int64,
    pending_ms Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (experiment, value_key, unit_id)
COMMENT 'Incremental roll-up: each unit''s raw measure values; read FINAL';

-- rollup_touched: the units one refresh recomputes (refresh_id: its version), written once and read
-- by the refresh's next statements. ReplacingMergeTree like its neighbours (a statement run twice
-- writes the same rows); the TTL drops a refresh's rows a day later.
CREATE TABLE IF NOT EXISTS {database}.rollup_touched
(
    experiment LowCardinality(String),
    refresh_id UInt64,
    unit_id String,
    created_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (experiment, refresh_id, unit_id)
TTL created_at + INTERVAL 1 DAY
COMMENT 'Incremental roll-up: the units a refresh recomputes; dropped after a day';
