-- name: upload_to_preview_latency
-- answers: How long do users wait for a preview? Seconds from the upload time carried on
--   the upload event (uploaded_at) to the first successful preview_extraction of the
--   preview job, per image; p50 / p95 / p99 / max over the images that got one.
-- headline: yes
SELECT
    count() AS images,
    round(quantileExact(0.50)(latency_s), 3) AS p50_s,
    round(quantileExact(0.95)(latency_s), 3) AS p95_s,
    round(quantileExact(0.99)(latency_s), 3) AS p99_s,
    round(max(latency_s), 3) AS max_s
FROM
(
    SELECT
        image_uuid,
        dateDiff('millisecond', min(uploaded_at), min(timestamp)) / 1000 AS latency_s
    FROM traces FINAL
    WHERE job = 'preview' AND trace_type = 'preview_extraction' AND success
      AND uploaded_at IS NOT NULL
    GROUP BY image_uuid
)
