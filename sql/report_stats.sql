-- Per room and bucket, every bucket of the range (quiet ones included), ordered by room then bucket.
-- Reads only the continuous aggregates of one granularity ({{room_agg}}, {{room_users_agg}},
-- replaced by storage/reports.go), their real-time part included.
--   $1 rooms uuid[]   $2 first bucket start   $3 range end (exclusive)   $4 bucket width interval
--   $5 zone text      $6 now (a bucket in progress ends at now)
-- The online count at the start of the range comes from report_online_start.sql; storage/reports.go
-- carries it forward from bucket to bucket and finishes peak and average
-- (see migrations/zoned/00004_report_aggregates.sql):
--   moment_part = net_delta * epoch(bucket end) - delta_moment, so integral = N0 * L + moment_part.
WITH rooms AS MATERIALIZED (
    SELECT DISTINCT unnest($1::uuid[]) AS room_id
), buckets AS (
    SELECT b AS bucket
    FROM generate_series($2::timestamptz, $3::timestamptz, $4::interval, $5::text) AS b
    WHERE b < $3::timestamptz
), agg AS (
    SELECT a.room_id, a.bucket, a.peak_in, a.online_end, a.net_delta, a.delta_moment,
           a.connections, a.sessions_ended, a.session_seconds_sum
    FROM {{room_agg}} AS a
    WHERE a.room_id = ANY ($1::uuid[]) AND a.bucket >= $2::timestamptz AND a.bucket < $3::timestamptz
), users AS (
    SELECT u.room_id, u.bucket, u.unique_users
    FROM {{room_users_agg}} AS u
    WHERE u.room_id = ANY ($1::uuid[]) AND u.bucket >= $2::timestamptz AND u.bucket < $3::timestamptz
)
SELECT r.room_id,
       b.bucket,
       a.peak_in,
       a.online_end,
       (a.net_delta * extract(epoch FROM least(date_add(b.bucket, $4::interval, $5::text), $6::timestamptz))
           - a.delta_moment)::float8 AS moment_part,
       coalesce(a.connections, 0) AS connections,
       coalesce(a.sessions_ended, 0) AS sessions_ended,
       coalesce(a.session_seconds_sum, 0) AS session_seconds_sum,
       coalesce(u.unique_users, 0) AS unique_users
FROM rooms AS r
CROSS JOIN buckets AS b
LEFT JOIN agg AS a ON a.room_id = r.room_id AND a.bucket = b.bucket
LEFT JOIN users AS u ON u.room_id = r.room_id AND u.bucket = b.bucket
ORDER BY r.room_id, b.bucket
