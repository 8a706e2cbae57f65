-- Unique users of the report buckets the count aggregates have not materialized yet (the bucket in
-- progress, and any the refresh policy has not reached), per room and across the selected rooms
-- (room_id NULL). They are counted from the per-user rows (one per bucket, room and user) of finer
-- aggregates that tile those report buckets, not through the report level's own per-user
-- aggregate: the real-time part of that one regroups the same finer rows first, which cost twice
-- as much here (a month in progress: 135 against 63 ms). Reading these once, instead of through
-- each count aggregate, is what keeps month and year reports fast (migration 8).
--
-- Five tiles, each [lo, hi) on its own source, skipped when empty (lo < hi folds to false when the
-- query is planned with its parameters); storage/report_users.go picks sources and bounds per
-- granularity. A year report: {{tile0}} the quarterly rows of finished quarters (migration 10);
-- a month or year report: {{tile1}} the monthly rows of finished months, {{tile2}}
-- and {{tile4}} daily rows, {{tile3}} the weekly rows of the finished weeks of the month in
-- progress (a year report's may begin before that month: tiles may overlap inside one report
-- bucket, where a user is kept once anyway, and a week across the 1st then replaces up to six
-- days of daily rows). The monthly and weekly sources are the tables TimescaleDB materializes those
-- aggregates into, read only up to the last bucket materialized there (where the aggregate itself
-- reads them too): through the aggregate, its real-time part would also scan every daily row
-- after its watermark only to drop them, since a time_bucket of a month or a week in the zone
-- cannot bound that scan (a year report: 195 against 120 ms). Each row goes to its report bucket
-- by time_bucket in the zone, as the aggregates bucket, or, when the tiles lie in one report
-- bucket ($9: the usual case, the bucket in progress), to $2 without a time_bucket per row (a
-- year in progress is some 20 rows per room and user); each (bucket, room, user) is kept once,
-- then counted per room and across rooms.
-- {{in_rooms:x}}: x.room_id = ANY ($1) for a selection of rooms, nothing for every room (storage
-- fills it in, byRooms: a room filter a generic plan can still answer from an index).
--   $1 rooms uuid[], or NULL for every room   $2-$6, $10, $11 the tiles' bounds: {{tile0}} [$2, $11),
--   {{tile1}} [$11, $3), {{tile2}} [$3, $4), {{tile3}} [$10, $5), {{tile4}} [$5, $6)
--   $7 report bucket width   $8 zone   $9 whether [$2, $6) is one report bucket
WITH rows AS (
    SELECT t.room_id, t.user_id,
           CASE WHEN $9::boolean THEN $2::timestamptz ELSE time_bucket($7::interval, t.bucket, $8::text) END AS bucket
    FROM {{tile0}} AS t
    WHERE $2::timestamptz < $11::timestamptz AND {{in_rooms:t}}
      AND t.bucket >= $2::timestamptz AND t.bucket < $11::timestamptz
    UNION ALL
    SELECT t.room_id, t.user_id, CASE WHEN $9::boolean THEN $2::timestamptz ELSE time_bucket($7::interval, t.bucket, $8::text) END
    FROM {{tile1}} AS t
    WHERE $11::timestamptz < $3::timestamptz AND {{in_rooms:t}}
      AND t.bucket >= $11::timestamptz AND t.bucket < $3::timestamptz
    UNION ALL
    SELECT t.room_id, t.user_id, CASE WHEN $9::boolean THEN $2::timestamptz ELSE time_bucket($7::interval, t.bucket, $8::text) END
    FROM {{tile2}} AS t
    WHERE $3::timestamptz < $4::timestamptz AND {{in_rooms:t}}
      AND t.bucket >= $3::timestamptz AND t.bucket < $4::timestamptz
    UNION ALL
    SELECT t.room_id, t.user_id, CASE WHEN $9::boolean THEN $2::timestamptz ELSE time_bucket($7::interval, t.bucket, $8::text) END
    FROM {{tile3}} AS t
    WHERE $10::timestamptz < $5::timestamptz AND {{in_rooms:t}}
      AND t.bucket >= $10::timestamptz AND t.bucket < $5::timestamptz
    UNION ALL
    SELECT t.room_id, t.user_id, CASE WHEN $9::boolean THEN $2::timestamptz ELSE time_bucket($7::interval, t.bucket, $8::text) END
    FROM {{tile4}} AS t
    WHERE $5::timestamptz < $6::timestamptz AND {{in_rooms:t}}
      AND t.bucket >= $5::timestamptz AND t.bucket < $6::timestamptz
), present AS MATERIALIZED (
    SELECT bucket, room_id, user_id FROM rows GROUP BY bucket, room_id, user_id
)
SELECT room_id, bucket, count(*) AS unique_users FROM present GROUP BY bucket, room_id
UNION ALL
SELECT NULL, bucket, count(DISTINCT user_id) FROM present GROUP BY bucket
