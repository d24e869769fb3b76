-- The incremental refresh asks "which units have rows received after the watermark?" on every run
-- (docs/analysis.md, "Incremental refresh"). received_at is in neither table's sorting key, so
-- without an index that question reads the column for every row ever stored. A minmax skip index
-- per granule lets ClickHouse skip the granules whose rows were all received before the watermark:
-- whole old parts (rows arrive in time order, and the big parts a merge has not touched for a while
-- hold only old rows), reading only the recent parts. MATERIALIZE builds it for the existing parts
-- (a background mutation on a server); new parts get it as they are written or merged.
ALTER TABLE {database}.events ADD INDEX IF NOT EXISTS events_received_at received_at TYPE minmax GRANULARITY 1;

ALTER TABLE {database}.events MATERIALIZE INDEX events_received_at;

ALTER TABLE {database}.exposures ADD INDEX IF NOT EXISTS exposures_received_at received_at TYPE minmax GRANULARITY 1;

ALTER TABLE {database}.exposures MATERIALIZE INDEX exposures_received_at;
