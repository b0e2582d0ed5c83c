-- name: throughput_per_minute
-- answers: How much work is done per minute? Attempts, successes, failures and distinct
--   images per minute and job, over the last 24 hours, from the traces_per_minute rollup
--   (redelivery-safe: uniq states of trace ids, see schema/002).
-- headline: yes
SELECT
    minute,
    job,
    uniqMerge(attempts) AS attempt_count,
    uniqMergeIf(attempts, success) AS succeeded,
    uniqMergeIf(attempts, NOT success) AS failed,
    uniqMerge(images) AS image_count
FROM traces_per_minute
WHERE minute >= now() - INTERVAL 1 DAY
GROUP BY minute, job
ORDER BY minute DESC, job
LIMIT 120
