-- name: metrics_preview_latency
-- answers: How long did users wait for a preview, over time? Seconds from uploaded_at to
--   the first successful preview_extraction of the preview job, per image, as p50 / p95 per
--   bucket of that preview's time: 1-minute buckets over the last hour (span 1h),
--   15-minute buckets over the last 24 hours (span 24h).
SELECT
    if(bucket_s = 60, '1h', '24h') AS span,
    intDiv(toUnixTimestamp(previewed), bucket_s) * bucket_s AS bucket,
    count() AS images,
    round(quantileExact(0.50)(latency_s), 3) AS p50_s,
    round(quantileExact(0.95)(latency_s), 3) AS p95_s
FROM
(
    SELECT
        image_uuid,
        min(timestamp) AS previewed,
        dateDiff('millisecond', min(uploaded_at), min(timestamp)) / 1000 AS latency_s
    FROM traces FINAL
    WHERE job = 'preview' AND trace_type = 'preview_extraction' AND success
      AND uploaded_at IS NOT NULL AND timestamp >= now() - INTERVAL 1 DAY
    GROUP BY image_uuid
)
ARRAY JOIN [60, 900] AS bucket_s
WHERE bucket_s = 900 OR previewed >= now() - INTERVAL 1 HOUR
GROUP BY span, bucket
ORDER BY span, bucket
