-- Per room and bucket with aggregate rows, ordered by room then bucket (sparse: storage/reports.go
-- fills the quiet buckets, where the room keeps its count, and skips none of the range's buckets).
-- Reads only the continuous aggregates of one granularity ({{room_agg}}, {{room_users_agg}},
-- replaced by storage/reports.go), their real-time part included.
--   $1 rooms uuid[]   $2 first bucket start   $3 range end (exclusive)   $4 bucket width interval
--   $5 zone text      $6 now (a bucket in progress ends at now)
-- The online count at the start of the range comes from report_online_start.sql; storage/reports.go
-- carries it forward from bucket to bucket and finishes peak and average
-- (see migrations/zoned/00004_report_aggregates.sql):
--   moment_part = net_delta * epoch(bucket end) - delta_moment, so integral = N0 * L + moment_part.
WITH agg AS (
    SELECT a.room_id, a.bucket, a.peak_in, a.online_end, a.net_delta, a.delta_moment,
           a.connections, a.sessions_ended, a.session_seconds_sum
    FROM {{room_agg}} AS a
    WHERE a.room_id = ANY ($1::uuid[]) AND a.bucket >= $2::timestamptz AND a.bucket < $3::timestamptz
), users AS (
    SELECT u.room_id, u.bucket, u.unique_users
    FROM {{room_users_agg}} AS u
    WHERE u.room_id = ANY ($1::uuid[]) AND u.bucket >= $2::timestamptz AND u.bucket < $3::timestamptz
)
SELECT a.room_id,
       a.bucket,
       a.peak_in,
       a.online_end,
       (a.net_delta * extract(epoch FROM least(date_add(a.bucket, $4::interval, $5::text), $6::timestamptz))
           - a.delta_moment)::float8 AS moment_part,
       a.connections,
       a.sessions_ended,
       coalesce(a.session_seconds_sum, 0) AS session_seconds_sum,
       coalesce(u.unique_users, 0) AS unique_users
FROM agg AS a
LEFT JOIN users AS u ON u.room_id = a.room_id AND u.bucket = a.bucket
ORDER BY a.room_id, a.bucket
