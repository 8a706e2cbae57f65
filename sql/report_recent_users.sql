-- Unique users of the report buckets the count aggregates have not materialized yet (the bucket in
-- progress, and any the refresh policy has not reached), per room and across the selected rooms
-- (room_id NULL). They are counted from the per-user rows (one per bucket, room and user) of finer
-- aggregates that tile those report buckets, not through the report level's own per-user
-- aggregate: the real-time part of that one regroups the same finer rows first, which cost twice
-- as much here (a month in progress: 135 against 63 ms). {{coarse_agg}} covers [$2, $3) and
-- {{fine_agg}} [$3, $4) (storage/reports.go picks them per granularity: for a year, the months
-- before the one in progress and then its days); each row goes to its report bucket by
-- time_bucket in the zone, as the aggregates bucket. Each (bucket, room, user) is kept once, then
-- counted per room and across rooms. Reading these once, instead of through each count aggregate,
-- is what keeps month and year reports fast (migration 8).
--   $1 rooms uuid[], or NULL for every room   $2 first report bucket to count
--   $3 where {{fine_agg}} takes over   $4 end of the last report bucket   $5 report bucket width   $6 zone
WITH rows AS (
    SELECT c.room_id, c.user_id, time_bucket($5::interval, c.bucket, $6::text) AS bucket
    FROM {{coarse_agg}} AS c
    WHERE ($1::uuid[] IS NULL OR c.room_id = ANY ($1::uuid[]))
      AND c.bucket >= $2::timestamptz AND c.bucket < $3::timestamptz
    UNION ALL
    SELECT f.room_id, f.user_id, time_bucket($5::interval, f.bucket, $6::text)
    FROM {{fine_agg}} AS f
    WHERE ($1::uuid[] IS NULL OR f.room_id = ANY ($1::uuid[]))
      AND f.bucket >= $3::timestamptz AND f.bucket < $4::timestamptz
), present AS MATERIALIZED (
    SELECT bucket, room_id, user_id FROM rows GROUP BY bucket, room_id, user_id
)
SELECT room_id, bucket, count(*) AS unique_users FROM present GROUP BY bucket, room_id
UNION ALL
SELECT NULL, bucket, count(DISTINCT user_id) FROM present GROUP BY bucket
