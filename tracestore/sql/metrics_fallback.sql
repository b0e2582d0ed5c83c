-- name: metrics_fallback
-- answers: How often did the first method not do the job, over time? Per bucket and
--   trace_type, the outputs produced (successful attempts) and how many came from a fallback
--   (method_order > 1), in 1-minute buckets over the last hour (span 1h) and 15-minute
--   buckets over the last 24 hours (span 24h).
SELECT
    if(bucket_s = 60, '1h', '24h') AS span,
    intDiv(toUnixTimestamp(timestamp), bucket_s) * bucket_s AS bucket,
    trace_type,
    countIf(success) AS produced,
    countIf(success AND method_order > 1) AS by_fallback
FROM traces FINAL
ARRAY JOIN [60, 900] AS bucket_s
WHERE timestamp >= now() - INTERVAL 1 DAY
  AND trace_type NOT IN ('retry', 'dead_letter')
  AND (bucket_s = 900 OR timestamp >= now() - INTERVAL 1 HOUR)
GROUP BY span, bucket, trace_type
ORDER BY span, bucket, trace_type
