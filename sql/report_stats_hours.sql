-- report_stats.sql for hourly reports: per room, its hours with aggregate rows, in room order,
-- read mostly one row per room and day from the by-day aggregates
-- (migrations/zoned/00009_report_hours_by_day.sql) instead of one row per room and hour, in their
-- packed form (report_pack_hour, report_pack_users, defined there):
--   part 0: the days [$3, $4), one row per room and day, straight from presence_room_hours_daily
--           and presence_room_users_hours_daily;
--   part 1: the hours [$5, $2) (today's: the by-day aggregates would compute a day not
--           materialized yet from every hour of it, at each read), from the hourly aggregates,
--           packed the same way here, one row per room.
-- Rows come ordered by room, part, then day; storage/report_stats.go and report_hours.go join a room's rows, lines the
-- users' hours up with the room's, and skips hours outside the report.
-- {{in_rooms:x}}: x.room_id = ANY ($1) for a selection of rooms, nothing for every room (storage
-- fills it in, byRooms: a room filter a generic plan can still answer from an index; the joined
-- side gets its own, as a join cannot carry ANY over).
--   $1 rooms uuid[], or NULL for every room   $2 range end (exclusive)
--   $3 the day of the report's first hour   $4 end of the days read whole
--   $5 where part 1 starts: the later of $4 and the first hour
WITH days AS (
    SELECT a.room_id, 0 AS part, a.bucket AS day, a.hours, coalesce(u.users, ''::bytea) AS users
    FROM presence_room_hours_daily AS a
    LEFT JOIN presence_room_users_hours_daily AS u
           ON u.room_id = a.room_id AND u.bucket = a.bucket AND {{in_rooms:u}}
          AND u.bucket >= $3::timestamptz AND u.bucket < $4::timestamptz
    WHERE {{in_rooms:a}}
      AND a.bucket >= $3::timestamptz AND a.bucket < $4::timestamptz
), users AS (
    SELECT u.room_id, u.bucket, u.unique_users
    FROM presence_room_users_hourly AS u
    WHERE {{in_rooms:u}}
      AND u.bucket >= $5::timestamptz AND u.bucket < $2::timestamptz
), hours AS (
    SELECT a.room_id, 1 AS part, NULL::timestamptz AS day,
           string_agg(report_pack_hour(a.bucket, a.peak_in, a.online_end, a.net_delta, a.delta_moment::float8,
                                       a.connections, a.sessions_ended, a.session_seconds_sum),
                      ''::bytea ORDER BY a.bucket) AS hours,
           coalesce(string_agg(report_pack_users(u.bucket, u.unique_users), ''::bytea ORDER BY u.bucket)
                    FILTER (WHERE u.bucket IS NOT NULL), ''::bytea) AS users
    FROM presence_room_hourly AS a
    LEFT JOIN users AS u ON u.room_id = a.room_id AND u.bucket = a.bucket
    WHERE {{in_rooms:a}}
      AND a.bucket >= $5::timestamptz AND a.bucket < $2::timestamptz
    GROUP BY a.room_id
)
SELECT room_id, hours, users
FROM (SELECT * FROM days UNION ALL SELECT * FROM hours) AS parts
ORDER BY room_id, part, day
