-- name: duration_percentiles
-- answers: How long does each method take? p50 / p95 / p99 / max of duration_ms per
--   trace_type and method, with the number of attempts behind them.
-- headline: yes
SELECT
    trace_type,
    method_tried,
    count() AS attempts,
    round(quantileExact(0.50)(duration_ms), 1) AS p50_ms,
    round(quantileExact(0.95)(duration_ms), 1) AS p95_ms,
    round(quantileExact(0.99)(duration_ms), 1) AS p99_ms,
    round(max(duration_ms), 1) AS max_ms
FROM traces FINAL
WHERE trace_type NOT IN ('retry', 'dead_letter')
GROUP BY trace_type, method_tried
ORDER BY trace_type, p95_ms DESC
