-- The online count of each room at the start s of a report: the online_end of its latest aggregate
-- row before s. Looking back over all history would cost as much as the history is long, so the
-- past is tiled from fine to coarse, each tile bounded, and the finest tile with a row wins:
--   hourly [$2, s)   daily [$4, $2)   monthly [$5, $4)   yearly before $5
-- where, for s in a day, month and year, $2 is the day's start, $4 the month's and $5 the year's
-- (storage/reports.go passes an empty tile, lo = hi, for levels finer than the report's; an empty
-- tile folds away when the query is planned with its parameters). Exact: a coarse row's
-- online_end is that of its last hour (last(online_end, bucket)).
-- The monthly and yearly rows are read from the tables TimescaleDB materializes those aggregates
-- into ({{room_monthly_materialized}}, {{room_yearly_materialized}}), so only below the last bucket
-- materialized there (report_users_marks.sql), where the aggregates read them too; storage/reports.go
-- moves $4 and $5 back to there when the refresh policies lag, and the daily tile (an aggregate,
-- its real-time part included) takes the months in between. Through the monthly and yearly
-- aggregates, their real-time parts scanned this month's and this year's rows only to drop them:
-- 35 against 12 ms for 100 rooms.
--   $1 rooms uuid[]   $2 start of the hourly tile   $3 s   $4 start of the daily tile
--   $5 start of the monthly tile
SELECT DISTINCT ON (t.room_id) t.room_id, t.online_end
FROM (
    (SELECT DISTINCT ON (h.room_id) 1 AS level, h.room_id, h.online_end
     FROM presence_room_hourly AS h
     WHERE $2::timestamptz < $3::timestamptz
       AND h.room_id = ANY ($1::uuid[]) AND h.bucket >= $2::timestamptz AND h.bucket < $3::timestamptz
     ORDER BY h.room_id, h.bucket DESC)
    UNION ALL
    (SELECT DISTINCT ON (d.room_id) 2 AS level, d.room_id, d.online_end
     FROM presence_room_daily AS d
     WHERE $4::timestamptz < $2::timestamptz
       AND d.room_id = ANY ($1::uuid[]) AND d.bucket >= $4::timestamptz AND d.bucket < $2::timestamptz
     ORDER BY d.room_id, d.bucket DESC)
    UNION ALL
    (SELECT DISTINCT ON (m.room_id) 3 AS level, m.room_id, m.online_end
     FROM {{room_monthly_materialized}} AS m
     WHERE $5::timestamptz < $4::timestamptz
       AND m.room_id = ANY ($1::uuid[]) AND m.bucket >= $5::timestamptz AND m.bucket < $4::timestamptz
     ORDER BY m.room_id, m.bucket DESC)
    UNION ALL
    (SELECT DISTINCT ON (y.room_id) 4 AS level, y.room_id, y.online_end
     FROM {{room_yearly_materialized}} AS y
     WHERE y.room_id = ANY ($1::uuid[]) AND y.bucket < $5::timestamptz
     ORDER BY y.room_id, y.bucket DESC)
) AS t
ORDER BY t.room_id, t.level
