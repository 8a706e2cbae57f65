-- Unique users of the buckets the count aggregates have not materialized yet (the bucket in
-- progress, and any the refresh policy has not reached), per room and across the selected rooms
-- (room_id NULL), read once from the real-time per-user aggregate {{user_agg}} (one row per
-- bucket, room and user). Reading the real-time part once here, instead of through each count
-- aggregate, is what keeps month and year reports fast (migration 8).
--   $1 rooms uuid[], or NULL for every room   $2 first bucket to count   $3 range end (exclusive)
SELECT u.room_id, u.bucket, count(DISTINCT u.user_id) AS unique_users
FROM {{user_agg}} AS u
WHERE ($1::uuid[] IS NULL OR u.room_id = ANY ($1::uuid[]))
  AND u.bucket >= $2::timestamptz AND u.bucket < $3::timestamptz
GROUP BY GROUPING SETS ((u.bucket, u.room_id), (u.bucket))
