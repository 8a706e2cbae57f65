-- Per room, the buckets with aggregate rows as parallel arrays in bucket order (each array_agg
-- orders by bucket; PostgreSQL sorts the input once for all of them), one row per room in
-- room order (a row per room, not per room and bucket: on the WebAssembly build the cost of a
-- report is mostly the number of rows it returns). Sparse: storage/report_stats.go fills the quiet
-- buckets, where the room keeps its count, and rooms without rows in the range.
-- Reads only the continuous aggregates of one granularity ({{room_agg}}, {{room_users_agg}},
-- replaced by storage/reports.go), their real-time part included.
-- {{in_rooms:x}}: x.room_id = ANY ($1) for a selection of rooms, nothing for every room (storage
-- fills it in, byRooms: a room filter a generic plan can still answer from an index).
--   $1 rooms uuid[], or NULL for every room   $2 first bucket start   $3 range end (exclusive)
-- The online count at the start of the range comes from report_online_start.sql; storage/reports.go
-- carries it forward from bucket to bucket and finishes peak and average
-- (see migrations/zoned/00004_report_aggregates.sql): with b1 the bucket's end (now while in
-- progress), integral = N0 * L + net_delta * epoch(b1) - delta_moment. Go works out b1: doing it
-- here (date_add in the zone, per row) was a quarter of the query's time.
WITH agg AS (
    SELECT a.room_id, a.bucket, a.peak_in, a.online_end, a.net_delta,
           a.delta_moment::float8 AS delta_moment,
           a.connections, a.sessions_ended,
           coalesce(a.session_seconds_sum, 0)::float8 AS session_seconds_sum
    FROM {{room_agg}} AS a
    WHERE {{in_rooms:a}}
      AND a.bucket >= $2::timestamptz AND a.bucket < $3::timestamptz
), users AS (
    SELECT u.room_id, u.bucket, u.unique_users
    FROM {{room_users_agg}} AS u
    WHERE {{in_rooms:u}}
      AND u.bucket >= $2::timestamptz AND u.bucket < $3::timestamptz
), joined AS (
    SELECT a.*, coalesce(u.unique_users, 0)::bigint AS unique_users
    FROM agg AS a
    LEFT JOIN users AS u ON u.room_id = a.room_id AND u.bucket = a.bucket
)
SELECT room_id,
       array_agg(bucket ORDER BY bucket) AS buckets,
       array_agg(peak_in ORDER BY bucket) AS peak_in,
       array_agg(online_end ORDER BY bucket) AS online_end,
       array_agg(net_delta ORDER BY bucket) AS net_delta,
       array_agg(delta_moment ORDER BY bucket) AS delta_moment,
       array_agg(connections ORDER BY bucket) AS connections,
       array_agg(sessions_ended ORDER BY bucket) AS sessions_ended,
       array_agg(session_seconds_sum ORDER BY bucket) AS session_seconds_sum,
       array_agg(unique_users ORDER BY bucket) AS unique_users
FROM joined
GROUP BY room_id
ORDER BY room_id
