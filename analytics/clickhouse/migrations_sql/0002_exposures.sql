-- Exposures: a unit was shown a variant of an experiment (logged by assignment, flag evaluation or
-- client-side SDKs through the API).
--
-- Engine: ReplacingMergeTree, so that an identical exposure sent twice (a retry, a spooled batch
-- replayed) collapses to one row; readers use the exposures_dedup view (FINAL). The analysis only
-- needs each unit's first exposure and the set of variants it saw, which duplicates would not change,
-- but deduplicated counts keep exposure totals honest.
--
-- ORDER BY (experiment, unit_id, timestamp, variant, environment): every analysis reads one
-- experiment's exposures and groups them by unit to find the first exposure (min timestamp) and the
-- variants seen, so the experiment prefix skips every other experiment and each unit's exposures are
-- adjacent and already in time order. The key is the whole identity of an exposure: two exposures
-- collapse only if they agree on all of it (attributes are context, not identity).
--
-- PARTITION BY month of the exposure: retention drops whole months; an experiment's analysis reads all
-- of its exposures whatever their timestamp (clients may send late), narrowed by the primary key.
CREATE TABLE IF NOT EXISTS {database}.exposures
(
    experiment LowCardinality(String),
    variant LowCardinality(String),
    unit_id String,
    timestamp DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    environment LowCardinality(String),
    attributes Map(String, String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (experiment, unit_id, timestamp, variant, environment)
COMMENT 'Exposures; identical rows collapse, read through exposures_dedup';
