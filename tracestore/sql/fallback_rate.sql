-- name: fallback_rate
-- answers: How often did the first method not do the job? Of the outputs produced
--   (successful attempts) per trace_type, the share that came from a fallback
--   (method_order > 1), e.g. previews decoded by Pillow because the file had no embedded one.
-- headline: yes
SELECT
    trace_type,
    countIf(success) AS produced,
    countIf(success AND method_order > 1) AS by_fallback,
    round(if(produced = 0, 0, by_fallback / produced), 4) AS fallback_rate,
    countIf(method_order > 1) AS fallback_attempts
FROM traces FINAL
WHERE trace_type NOT IN ('retry', 'dead_letter')
GROUP BY trace_type
ORDER BY fallback_rate DESC, trace_type
