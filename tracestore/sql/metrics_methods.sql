-- name: metrics_methods
-- answers: How long does each method take lately? p50 / p95 of duration_ms per job,
--   trace_type and method, with the attempts behind them, over the last hour (span 1h)
--   and the last 24 hours (span 24h).
SELECT
    span,
    job,
    trace_type,
    method_tried,
    count() AS attempts,
    round(quantileExact(0.50)(duration_ms), 1) AS p50_ms,
    round(quantileExact(0.95)(duration_ms), 1) AS p95_ms
FROM traces FINAL
ARRAY JOIN ['1h', '24h'] AS span
WHERE timestamp >= now() - INTERVAL 1 DAY
  AND trace_type NOT IN ('retry', 'dead_letter')
  AND (span = '24h' OR timestamp >= now() - INTERVAL 1 HOUR)
GROUP BY span, job, trace_type, method_tried
ORDER BY span, job, trace_type, p95_ms DESC
