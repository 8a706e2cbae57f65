-- Distinct users per bucket across the selected rooms (a user in two rooms counts once).
--   $1 rooms uuid[]   $2 first bucket start   $3 range end (exclusive); {{user_agg}} as in report_stats.sql
SELECT u.bucket, count(DISTINCT u.user_id) AS unique_users
FROM {{user_agg}} AS u
WHERE u.room_id = ANY ($1::uuid[]) AND u.bucket >= $2::timestamptz AND u.bucket < $3::timestamptz
GROUP BY u.bucket
