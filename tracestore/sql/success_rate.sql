-- name: success_rate
-- answers: How often does each method work? Attempts, successes and success rate (0..1)
--   per trace_type and method; a method that fails often is a fallback that costs time.
-- headline: yes
SELECT
    trace_type,
    method_tried,
    count() AS attempts,
    countIf(success) AS succeeded,
    round(countIf(success) / count(), 4) AS success_rate
FROM traces FINAL
WHERE trace_type NOT IN ('retry', 'dead_letter')
GROUP BY trace_type, method_tried
ORDER BY trace_type, attempts DESC
