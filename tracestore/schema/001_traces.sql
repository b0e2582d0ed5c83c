-- One row per processing attempt (streams.traces.TraceEvent, one column per field).
--
-- ReplacingMergeTree on (image_uuid, trace_id): a redelivered event has the same trace_id
-- and lands in the same daily partition (its timestamp is part of the event), so merges
-- keep one row per attempt. Until a merge has run, duplicates can be on disk: every query
-- of the SQL pack reads `traces FINAL`, which collapses them at read time.
-- image_uuid leads the sort key because the commonest lookup is one upload's timeline.
CREATE TABLE IF NOT EXISTS {database}.traces
(
    trace_id         UUID,
    image_uuid       UUID,
    job              LowCardinality(String),
    trace_type       LowCardinality(String),
    method_tried     LowCardinality(String),
    method_order     UInt16,
    success          Bool,
    failure_reason   Nullable(String),
    duration_ms      Float64,
    size_bytes       Nullable(Int64),
    width            Nullable(Int32),
    height           Nullable(Int32),
    attempt          UInt16,
    worker_id        LowCardinality(String),
    source_topic     LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    uploaded_at      Nullable(DateTime64(6, 'UTC')),
    timestamp        DateTime64(6, 'UTC'),
    schema_version   UInt8,
    inserted_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toDate(timestamp)
ORDER BY (image_uuid, trace_id)
TTL toDateTime(timestamp) + INTERVAL {ttl_days} DAY;
