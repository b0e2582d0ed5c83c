-- name: metrics_failures
-- answers: What makes jobs fail lately? Failed job runs by error class (the method_tried of
--   their retry or dead_letter trace) and job: how many were retried and how many went to a
--   dead letter, over the last hour (span 1h) and the last 24 hours (span 24h).
SELECT
    span,
    method_tried AS error_class,
    job,
    countIf(trace_type = 'retry') AS retried,
    countIf(trace_type = 'dead_letter') AS dead_lettered
FROM traces FINAL
ARRAY JOIN ['1h', '24h'] AS span
WHERE timestamp >= now() - INTERVAL 1 DAY
  AND trace_type IN ('retry', 'dead_letter')
  AND (span = '24h' OR timestamp >= now() - INTERVAL 1 HOUR)
GROUP BY span, error_class, job
ORDER BY span, retried + dead_lettered DESC, error_class, job
