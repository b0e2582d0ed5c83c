-- name: dead_letters
-- answers: Which uploads ended in a dead letter, and why? One row per dead-lettered job
--   run (trace_type dead_letter), newest first.
-- headline: yes
SELECT
    timestamp,
    image_uuid,
    job,
    attempt,
    method_tried AS error_class,
    substring(ifNull(failure_reason, ''), 1, 160) AS reason
FROM traces FINAL
WHERE trace_type = 'dead_letter'
ORDER BY timestamp DESC
LIMIT 20
