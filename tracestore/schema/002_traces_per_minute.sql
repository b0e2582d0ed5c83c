-- Rollup: attempts and images per minute, job, trace_type, method and outcome.
--
-- It pays for the throughput query over days of data, which would otherwise scan and
-- FINAL-merge every raw row. A materialized view sees every inserted block, duplicates
-- included, so its states are uniq() of ids, not counts: a redelivered batch adds ids
-- already in the set and the numbers do not move. uniq() is exact up to 65,536 ids per
-- group and minute and within about 2 % beyond.
CREATE TABLE IF NOT EXISTS {database}.traces_per_minute
(
    minute       DateTime('UTC'),
    job          LowCardinality(String),
    trace_type   LowCardinality(String),
    method_tried LowCardinality(String),
    success      Bool,
    attempts     AggregateFunction(uniq, UUID),
    images       AggregateFunction(uniq, UUID)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (minute, job, trace_type, method_tried, success)
TTL minute + INTERVAL {ttl_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.traces_per_minute_mv
TO {database}.traces_per_minute
AS SELECT
    toStartOfMinute(timestamp) AS minute,
    job,
    trace_type,
    method_tried,
    success,
    uniqState(trace_id)   AS attempts,
    uniqState(image_uuid) AS images
FROM {database}.traces
GROUP BY minute, job, trace_type, method_tried, success;
