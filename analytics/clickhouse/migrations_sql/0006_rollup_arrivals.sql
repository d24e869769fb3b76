-- The incremental roll-up adds what arrived to each unit's state instead of reading the unit's events
-- again (docs/analysis.md, "Incremental refresh").
--
-- rollup_arrivals: the event rows one refresh read as arrivals (received after the previous watermark,
-- or after its own one for a full refresh), every environment. new = 1 for the rows this refresh adds
-- to the state; the next refresh leaves out the rows listed here, which it reads again because they
-- were received after its watermark although already counted. MergeTree: a refresh writes its rows
-- once under its own refresh_id. ORDER BY (experiment, refresh_id, unit_id): a refresh reads its own
-- rows, and the next one the previous refresh's. The TTL drops them after a week; a refresh whose
-- previous refresh is older than that recomputes in full.
CREATE TABLE IF NOT EXISTS {database}.rollup_arrivals
(
    experiment LowCardinality(String),
    refresh_id UInt64,
    unit_id String,
    name LowCardinality(String),
    event_id UUID,
    ts Int64,
    value Float64,
    environment LowCardinality(String),
    month UInt32,
    received_at DateTime64(3, 'UTC'),
    new UInt8,
    created_at DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (experiment, refresh_id, unit_id)
TTL created_at + INTERVAL 7 DAY
COMMENT 'Incremental roll-up: the event rows a refresh read as arrivals; dropped after a week';

-- rollup_scratch_units, rollup_scratch_values: the touched units' state rows before (phase 0) and
-- after (phase 1) one refresh, and the units it recomputes from their events (phase 2), so that the refresh reads the big state tables once (to copy the touched
-- units' rows out) and everything else (the new rows, the sums before and after) from these small
-- tables (changed: a value row phase 1 that differs from phase 0, the only ones written back). MergeTree,
-- ORDER BY (experiment, refresh_id, phase, unit_id), dropped a day later.
CREATE TABLE IF NOT EXISTS {database}.rollup_scratch_units
(
    experiment LowCardinality(String),
    refresh_id UInt64,
    phase UInt8,
    unit_id String,
    t0_ms Int64,
    variant_index Int16,
    last_exposure_ms Int64,
    created_at DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (experiment, refresh_id, phase, unit_id)
TTL created_at + INTERVAL 1 DAY
COMMENT 'Incremental roll-up: touched units before and after a refresh; dropped after a day';

CREATE TABLE IF NOT EXISTS {database}.rollup_scratch_values
(
    experiment LowCardinality(String),
    refresh_id UInt64,
    phase UInt8,
    value_key String,
    unit_id String,
    total Float64,
    days Array(Int32),
    increments Array(Float64),
    last_ms Int64,
    pending_ms Int64,
    keys Array(UInt64),
    contents Array(UInt64),
    changed UInt8,
    created_at DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (experiment, refresh_id, phase, unit_id)
TTL created_at + INTERVAL 1 DAY
COMMENT 'Incremental roll-up: touched units'' values before and after a refresh; dropped after a day';

-- A unit's counted events, so that a replay is recognised without reading the events again: one row
-- per unit and event name (a value_key of its own) lists each event's key hash (name, event_id and
-- month: what a replay collapses on) and content hash (timestamp, value, environment).
ALTER TABLE {database}.rollup_values ADD COLUMN IF NOT EXISTS keys Array(UInt64);

ALTER TABLE {database}.rollup_values ADD COLUMN IF NOT EXISTS contents Array(UInt64);

-- Why a refresh touched a unit (bits: 1 events arrived, 2 exposures arrived, 4 a pending event now
-- counts, 8 its entry day moves with the analysis time, 16 recompute it from its events).
ALTER TABLE {database}.rollup_touched ADD COLUMN IF NOT EXISTS reasons UInt8;
