-- name: slowest_uploads
-- answers: Which uploads cost the most? Per image, the time spent in all attempts of all
--   jobs, how many attempts and failures it took, and its last outcome; top 20.
-- headline: yes
SELECT
    image_uuid,
    round(sum(duration_ms), 1) AS total_ms,
    count() AS attempts,
    countIf(NOT success) AS failed_attempts,
    groupUniqArray(job) AS jobs,
    argMax(trace_type, timestamp) AS last_step,
    argMax(success, timestamp) AS last_ok,
    max(timestamp) AS last_seen
FROM traces FINAL
GROUP BY image_uuid
ORDER BY total_ms DESC
LIMIT 20
