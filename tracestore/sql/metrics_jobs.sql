-- name: metrics_jobs
-- answers: How many jobs ran, how many failed and how long they took, over time? Job runs
--   (one upload, one job, one delivery) per bucket and job, for the last hour (1-minute
--   buckets, span 1h) and the last 24 hours (15-minute buckets, span 24h); a run counts
--   in the bucket of its first trace, it failed if it ended in a retry or a dead letter; its
--   runtime (p50 / p95 per bucket) is the sum of its attempts' duration_ms, or for a failed
--   run the duration of its retry / dead_letter trace, which times the whole run.
SELECT
    if(bucket_s = 60, '1h', '24h') AS span,
    intDiv(toUnixTimestamp(started), bucket_s) * bucket_s AS bucket,
    job,
    count() AS runs,
    countIf(failed) AS failed,
    round(quantileExact(0.50)(runtime_ms), 1) AS p50_ms,
    round(quantileExact(0.95)(runtime_ms), 1) AS p95_ms
FROM
(
    SELECT
        job,
        image_uuid,
        attempt,
        min(timestamp) AS started,
        max(trace_type IN ('retry', 'dead_letter')) AS failed,
        if(failed, maxIf(duration_ms, trace_type IN ('retry', 'dead_letter')),
           sumIf(duration_ms, trace_type NOT IN ('retry', 'dead_letter'))) AS runtime_ms
    FROM traces FINAL
    WHERE timestamp >= now() - INTERVAL 1 DAY
    GROUP BY job, image_uuid, attempt
)
ARRAY JOIN [60, 900] AS bucket_s
WHERE bucket_s = 900 OR started >= now() - INTERVAL 1 HOUR
GROUP BY span, bucket, job
ORDER BY span, bucket, job
