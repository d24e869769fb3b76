-- What analysis reads: the tables FINAL, so each event_id (and each identical exposure) counts once
-- even before background merges have collapsed the replays. Filters on the sorting key (name,
-- experiment, unit_id) are pushed through the view into the primary index.
CREATE VIEW IF NOT EXISTS {database}.events_dedup
AS SELECT * FROM {database}.events FINAL;

CREATE VIEW IF NOT EXISTS {database}.exposures_dedup
AS SELECT * FROM {database}.exposures FINAL;
