-- Raw metric events, one row per event the API accepted.
--
-- Engine: ReplacingMergeTree, so that a replayed event (a client retry, or a spooled batch inserted
-- again after a crash between insert and delete) collapses to one row. Rows collapse when they share
-- the sorting key and the partition, so the key ends with event_id and holds nothing a replay could
-- change (no timestamp: the API defaults it to "now" when the client leaves it out). Merges happen
-- in the background, so readers count through the events_dedup view (FINAL), never this table.
--
-- ORDER BY (name, unit_id, event_id): every analysis reads the events of one name (a metric's event)
-- and joins them to exposures on unit_id, so the name prefix lets the primary index skip every other
-- event, and a unit's events sit together.
--
-- PARTITION BY month of the event's timestamp: analyses read a time range (the lookback before the
-- first exposure up to the analysis time), so old months are pruned, and retention drops whole
-- months. A replay lands in the same month unless its server-defaulted timestamp crosses a month
-- boundary; FINAL does not merge across partitions, so clients that retry send their own timestamp.
CREATE TABLE IF NOT EXISTS {database}.events
(
    event_id UUID,
    name LowCardinality(String),
    unit_id String,
    value Float64,
    timestamp DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    environment LowCardinality(String),
    properties Map(String, String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (name, unit_id, event_id)
COMMENT 'Metric events; replays of an event_id collapse, read through events_dedup';
