-- name: top_failures
-- answers: What goes wrong most? Failed attempts grouped by trace_type, method and reason
--   (the reason's first 120 characters, so file names in messages do not split groups
--   too much), with how many images they touched and when last seen.
-- headline: yes
SELECT
    trace_type,
    method_tried,
    substring(ifNull(failure_reason, ''), 1, 120) AS reason,
    count() AS failures,
    uniqExact(image_uuid) AS images,
    max(timestamp) AS last_seen
FROM traces FINAL
WHERE NOT success
GROUP BY trace_type, method_tried, reason
ORDER BY failures DESC, last_seen DESC
LIMIT 20
