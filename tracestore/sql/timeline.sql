-- name: timeline
-- answers: What happened to one upload? Every attempt of every job, oldest first: which
--   method ran in which order, whether it worked, why not, how long it took, on which worker.
-- params: uuid (the image UUID)
SELECT
    timestamp,
    job,
    attempt,
    trace_type,
    method_order,
    method_tried,
    success,
    round(duration_ms, 1) AS duration_ms,
    width,
    height,
    size_bytes,
    failure_reason,
    worker_id,
    source_topic,
    source_partition,
    source_offset,
    trace_id
FROM traces FINAL
WHERE image_uuid = {uuid:UUID}
ORDER BY timestamp, attempt, method_order
