-- +goose Up
-- The analysts' SQL: schema stats, stable documented views over the report aggregates, and the
-- role presence_analyst that reads stats and nothing else. The views are the contract: the
-- aggregates behind them (migration 4) may change; these names, columns and meanings do not.
-- Views run with their owner's rights, so presence_analyst needs no right on the aggregates.
-- Bucket ends: a bucket ends width later in the report zone. An hour has no calendar part, so
-- plain + is that instant; a day, week, month or year is added to the local time and read back in
-- the zone, ((bucket AT TIME ZONE zone) + width) AT TIME ZONE zone, which is what PostgreSQL 16's
-- date_add(bucket, width, zone) computes (storage/postgres15_test.go compares the two across DST
-- changes). This file used date_add until PostgreSQL 15 was found to lack it. A database that
-- applied the old text on PostgreSQL 16 or 17 keeps its date_add views (goose does not re-run an
-- applied migration): their results are the same, so no migration replaces them; on PostgreSQL
-- 15 the old text never applied (this migration runs in one transaction, rolled back whole).
CREATE SCHEMA stats;

COMMENT ON SCHEMA stats IS 'Presence history for analysts: one view per granularity (room_hourly ... room_yearly), room_users, unique_users, peak_hours. Times are timestamptz; buckets start in the report time zone (stats.report_timezone).';

CREATE VIEW stats.report_timezone AS SELECT timezone FROM report_settings;

COMMENT ON VIEW stats.report_timezone IS 'The time zone (REPORT_TIMEZONE) in which every bucket of the stats views starts.';

-- +goose StatementBegin
CREATE VIEW stats.room_hourly AS
SELECT a.room_id,
       a.bucket,
       greatest(a.online_start, a.peak_in)::bigint AS peak_online_count,
       ((a.online_start * extract(epoch FROM a.bucket_end - a.bucket)
         + a.net_delta * extract(epoch FROM a.bucket_end) - a.delta_moment)
        / nullif(extract(epoch FROM a.bucket_end - a.bucket), 0))::double precision AS avg_online_count,
       a.connections AS total_connections,
       coalesce(u.unique_users, 0) AS unique_users,
       (a.session_seconds_sum / nullif(a.sessions_ended, 0))::double precision AS avg_session_duration,
       a.sessions_ended
FROM (
    SELECT c.*,
           coalesce(lag(c.online_end) OVER (PARTITION BY c.room_id ORDER BY c.bucket), 0) AS online_start,
           least(c.bucket + INTERVAL '1 hour', now()) AS bucket_end
    FROM presence_room_hourly AS c
    CROSS JOIN report_settings AS s
) AS a
LEFT JOIN (
    SELECT room_id, bucket, count(*) AS unique_users
    FROM presence_user_hourly
    GROUP BY room_id, bucket
) AS u ON u.room_id = a.room_id AND u.bucket = a.bucket;
-- +goose StatementEnd

COMMENT ON VIEW stats.room_hourly IS 'Presence per room and hour (buckets with at least one event; in a missing bucket the room kept the online count it had at the end of the previous row). Filter on room_id first: bucket filters apply after the carry-forward over the room''s rows.';

COMMENT ON COLUMN stats.room_hourly.room_id IS 'The room.';

COMMENT ON COLUMN stats.room_hourly.bucket IS 'Start of the hour, in the report time zone.';

COMMENT ON COLUMN stats.room_hourly.peak_online_count IS 'Most distinct users online at once during the hour, users online through all of it included. Exact.';

COMMENT ON COLUMN stats.room_hourly.avg_online_count IS 'Time-weighted average of distinct users online over the hour (over its elapsed part while in progress). Exact up to floating point.';

COMMENT ON COLUMN stats.room_hourly.total_connections IS 'Sessions (tabs) opened in the hour.';

COMMENT ON COLUMN stats.room_hourly.unique_users IS 'Distinct users with any event (connect, heartbeat, disconnect) in the room in the hour. Distinct counts do not add up: count stats.room_users for other groupings.';

COMMENT ON COLUMN stats.room_hourly.avg_session_duration IS 'Mean length in seconds of the sessions that ended in the hour; NULL when none ended.';

COMMENT ON COLUMN stats.room_hourly.sessions_ended IS 'Sessions that ended in the hour (the weight of avg_session_duration).';

-- +goose StatementBegin
CREATE VIEW stats.room_daily AS
SELECT a.room_id,
       a.bucket,
       greatest(a.online_start, a.peak_in)::bigint AS peak_online_count,
       ((a.online_start * extract(epoch FROM a.bucket_end - a.bucket)
         + a.net_delta * extract(epoch FROM a.bucket_end) - a.delta_moment)
        / nullif(extract(epoch FROM a.bucket_end - a.bucket), 0))::double precision AS avg_online_count,
       a.connections AS total_connections,
       coalesce(u.unique_users, 0) AS unique_users,
       (a.session_seconds_sum / nullif(a.sessions_ended, 0))::double precision AS avg_session_duration,
       a.sessions_ended
FROM (
    SELECT c.*,
           coalesce(lag(c.online_end) OVER (PARTITION BY c.room_id ORDER BY c.bucket), 0) AS online_start,
           least(((c.bucket AT TIME ZONE s.timezone) + INTERVAL '1 day') AT TIME ZONE s.timezone, now()) AS bucket_end
    FROM presence_room_daily AS c
    CROSS JOIN report_settings AS s
) AS a
LEFT JOIN (
    SELECT room_id, bucket, count(*) AS unique_users
    FROM presence_user_daily
    GROUP BY room_id, bucket
) AS u ON u.room_id = a.room_id AND u.bucket = a.bucket;
-- +goose StatementEnd

COMMENT ON VIEW stats.room_daily IS 'Presence per room and day (buckets with at least one event; in a missing bucket the room kept the online count it had at the end of the previous row). Filter on room_id first: bucket filters apply after the carry-forward over the room''s rows.';

COMMENT ON COLUMN stats.room_daily.room_id IS 'The room.';

COMMENT ON COLUMN stats.room_daily.bucket IS 'Start of the day, in the report time zone.';

COMMENT ON COLUMN stats.room_daily.peak_online_count IS 'Most distinct users online at once during the day, users online through all of it included. Exact.';

COMMENT ON COLUMN stats.room_daily.avg_online_count IS 'Time-weighted average of distinct users online over the day (over its elapsed part while in progress). Exact up to floating point.';

COMMENT ON COLUMN stats.room_daily.total_connections IS 'Sessions (tabs) opened in the day.';

COMMENT ON COLUMN stats.room_daily.unique_users IS 'Distinct users with any event (connect, heartbeat, disconnect) in the room in the day. Distinct counts do not add up: count stats.room_users for other groupings.';

COMMENT ON COLUMN stats.room_daily.avg_session_duration IS 'Mean length in seconds of the sessions that ended in the day; NULL when none ended.';

COMMENT ON COLUMN stats.room_daily.sessions_ended IS 'Sessions that ended in the day (the weight of avg_session_duration).';

-- +goose StatementBegin
CREATE VIEW stats.room_weekly AS
SELECT a.room_id,
       a.bucket,
       greatest(a.online_start, a.peak_in)::bigint AS peak_online_count,
       ((a.online_start * extract(epoch FROM a.bucket_end - a.bucket)
         + a.net_delta * extract(epoch FROM a.bucket_end) - a.delta_moment)
        / nullif(extract(epoch FROM a.bucket_end - a.bucket), 0))::double precision AS avg_online_count,
       a.connections AS total_connections,
       coalesce(u.unique_users, 0) AS unique_users,
       (a.session_seconds_sum / nullif(a.sessions_ended, 0))::double precision AS avg_session_duration,
       a.sessions_ended
FROM (
    SELECT c.*,
           coalesce(lag(c.online_end) OVER (PARTITION BY c.room_id ORDER BY c.bucket), 0) AS online_start,
           least(((c.bucket AT TIME ZONE s.timezone) + INTERVAL '7 days') AT TIME ZONE s.timezone, now()) AS bucket_end
    FROM presence_room_weekly AS c
    CROSS JOIN report_settings AS s
) AS a
LEFT JOIN (
    SELECT room_id, bucket, count(*) AS unique_users
    FROM presence_user_weekly
    GROUP BY room_id, bucket
) AS u ON u.room_id = a.room_id AND u.bucket = a.bucket;
-- +goose StatementEnd

COMMENT ON VIEW stats.room_weekly IS 'Presence per room and week (buckets with at least one event; in a missing bucket the room kept the online count it had at the end of the previous row). Filter on room_id first: bucket filters apply after the carry-forward over the room''s rows.';

COMMENT ON COLUMN stats.room_weekly.room_id IS 'The room.';

COMMENT ON COLUMN stats.room_weekly.bucket IS 'Start of the week, in the report time zone.';

COMMENT ON COLUMN stats.room_weekly.peak_online_count IS 'Most distinct users online at once during the week, users online through all of it included. Exact.';

COMMENT ON COLUMN stats.room_weekly.avg_online_count IS 'Time-weighted average of distinct users online over the week (over its elapsed part while in progress). Exact up to floating point.';

COMMENT ON COLUMN stats.room_weekly.total_connections IS 'Sessions (tabs) opened in the week.';

COMMENT ON COLUMN stats.room_weekly.unique_users IS 'Distinct users with any event (connect, heartbeat, disconnect) in the room in the week. Distinct counts do not add up: count stats.room_users for other groupings.';

COMMENT ON COLUMN stats.room_weekly.avg_session_duration IS 'Mean length in seconds of the sessions that ended in the week; NULL when none ended.';

COMMENT ON COLUMN stats.room_weekly.sessions_ended IS 'Sessions that ended in the week (the weight of avg_session_duration).';

-- +goose StatementBegin
CREATE VIEW stats.room_monthly AS
SELECT a.room_id,
       a.bucket,
       greatest(a.online_start, a.peak_in)::bigint AS peak_online_count,
       ((a.online_start * extract(epoch FROM a.bucket_end - a.bucket)
         + a.net_delta * extract(epoch FROM a.bucket_end) - a.delta_moment)
        / nullif(extract(epoch FROM a.bucket_end - a.bucket), 0))::double precision AS avg_online_count,
       a.connections AS total_connections,
       coalesce(u.unique_users, 0) AS unique_users,
       (a.session_seconds_sum / nullif(a.sessions_ended, 0))::double precision AS avg_session_duration,
       a.sessions_ended
FROM (
    SELECT c.*,
           coalesce(lag(c.online_end) OVER (PARTITION BY c.room_id ORDER BY c.bucket), 0) AS online_start,
           least(((c.bucket AT TIME ZONE s.timezone) + INTERVAL '1 month') AT TIME ZONE s.timezone, now()) AS bucket_end
    FROM presence_room_monthly AS c
    CROSS JOIN report_settings AS s
) AS a
LEFT JOIN (
    SELECT room_id, bucket, count(*) AS unique_users
    FROM presence_user_monthly
    GROUP BY room_id, bucket
) AS u ON u.room_id = a.room_id AND u.bucket = a.bucket;
-- +goose StatementEnd

COMMENT ON VIEW stats.room_monthly IS 'Presence per room and month (buckets with at least one event; in a missing bucket the room kept the online count it had at the end of the previous row). Filter on room_id first: bucket filters apply after the carry-forward over the room''s rows.';

COMMENT ON COLUMN stats.room_monthly.room_id IS 'The room.';

COMMENT ON COLUMN stats.room_monthly.bucket IS 'Start of the month, in the report time zone.';

COMMENT ON COLUMN stats.room_monthly.peak_online_count IS 'Most distinct users online at once during the month, users online through all of it included. Exact.';

COMMENT ON COLUMN stats.room_monthly.avg_online_count IS 'Time-weighted average of distinct users online over the month (over its elapsed part while in progress). Exact up to floating point.';

COMMENT ON COLUMN stats.room_monthly.total_connections IS 'Sessions (tabs) opened in the month.';

COMMENT ON COLUMN stats.room_monthly.unique_users IS 'Distinct users with any event (connect, heartbeat, disconnect) in the room in the month. Distinct counts do not add up: count stats.room_users for other groupings.';

COMMENT ON COLUMN stats.room_monthly.avg_session_duration IS 'Mean length in seconds of the sessions that ended in the month; NULL when none ended.';

COMMENT ON COLUMN stats.room_monthly.sessions_ended IS 'Sessions that ended in the month (the weight of avg_session_duration).';

-- +goose StatementBegin
CREATE VIEW stats.room_yearly AS
SELECT a.room_id,
       a.bucket,
       greatest(a.online_start, a.peak_in)::bigint AS peak_online_count,
       ((a.online_start * extract(epoch FROM a.bucket_end - a.bucket)
         + a.net_delta * extract(epoch FROM a.bucket_end) - a.delta_moment)
        / nullif(extract(epoch FROM a.bucket_end - a.bucket), 0))::double precision AS avg_online_count,
       a.connections AS total_connections,
       coalesce(u.unique_users, 0) AS unique_users,
       (a.session_seconds_sum / nullif(a.sessions_ended, 0))::double precision AS avg_session_duration,
       a.sessions_ended
FROM (
    SELECT c.*,
           coalesce(lag(c.online_end) OVER (PARTITION BY c.room_id ORDER BY c.bucket), 0) AS online_start,
           least(((c.bucket AT TIME ZONE s.timezone) + INTERVAL '1 year') AT TIME ZONE s.timezone, now()) AS bucket_end
    FROM presence_room_yearly AS c
    CROSS JOIN report_settings AS s
) AS a
LEFT JOIN (
    SELECT room_id, bucket, count(*) AS unique_users
    FROM presence_user_yearly
    GROUP BY room_id, bucket
) AS u ON u.room_id = a.room_id AND u.bucket = a.bucket;
-- +goose StatementEnd

COMMENT ON VIEW stats.room_yearly IS 'Presence per room and year (buckets with at least one event; in a missing bucket the room kept the online count it had at the end of the previous row). Filter on room_id first: bucket filters apply after the carry-forward over the room''s rows.';

COMMENT ON COLUMN stats.room_yearly.room_id IS 'The room.';

COMMENT ON COLUMN stats.room_yearly.bucket IS 'Start of the year, in the report time zone.';

COMMENT ON COLUMN stats.room_yearly.peak_online_count IS 'Most distinct users online at once during the year, users online through all of it included. Exact.';

COMMENT ON COLUMN stats.room_yearly.avg_online_count IS 'Time-weighted average of distinct users online over the year (over its elapsed part while in progress). Exact up to floating point.';

COMMENT ON COLUMN stats.room_yearly.total_connections IS 'Sessions (tabs) opened in the year.';

COMMENT ON COLUMN stats.room_yearly.unique_users IS 'Distinct users with any event (connect, heartbeat, disconnect) in the room in the year. Distinct counts do not add up: count stats.room_users for other groupings.';

COMMENT ON COLUMN stats.room_yearly.avg_session_duration IS 'Mean length in seconds of the sessions that ended in the year; NULL when none ended.';

COMMENT ON COLUMN stats.room_yearly.sessions_ended IS 'Sessions that ended in the year (the weight of avg_session_duration).';

-- +goose StatementBegin
CREATE VIEW stats.room_users AS
SELECT 'hour'::text AS granularity, bucket, room_id, user_id, events FROM presence_user_hourly
UNION ALL
SELECT 'day'::text AS granularity, bucket, room_id, user_id, events FROM presence_user_daily
UNION ALL
SELECT 'week'::text AS granularity, bucket, room_id, user_id, events FROM presence_user_weekly
UNION ALL
SELECT 'month'::text AS granularity, bucket, room_id, user_id, events FROM presence_user_monthly
UNION ALL
SELECT 'year'::text AS granularity, bucket, room_id, user_id, events FROM presence_user_yearly;
-- +goose StatementEnd

COMMENT ON VIEW stats.room_users IS 'One row per granularity, bucket, room and user seen in it: count distinct user_id over any set of rooms and buckets of one granularity for exact unique users.';
COMMENT ON COLUMN stats.room_users.granularity IS 'hour, day, week, month or year: always filter on it.';
COMMENT ON COLUMN stats.room_users.bucket IS 'Start of the bucket, in the report time zone.';
COMMENT ON COLUMN stats.room_users.room_id IS 'The room.';
COMMENT ON COLUMN stats.room_users.user_id IS 'A user with at least one event in the room in the bucket.';
COMMENT ON COLUMN stats.room_users.events IS 'Events of that user in that room and bucket (heartbeats included).';

CREATE VIEW stats.unique_users AS
SELECT granularity, bucket, count(DISTINCT user_id) AS unique_users, count(DISTINCT room_id) AS rooms
FROM stats.room_users
GROUP BY granularity, bucket;

COMMENT ON VIEW stats.unique_users IS 'Distinct users across all rooms per granularity and bucket (a user in two rooms counts once).';
COMMENT ON COLUMN stats.unique_users.granularity IS 'hour, day, week, month or year: always filter on it.';
COMMENT ON COLUMN stats.unique_users.bucket IS 'Start of the bucket, in the report time zone.';
COMMENT ON COLUMN stats.unique_users.unique_users IS 'Distinct users with any event in any room in the bucket.';
COMMENT ON COLUMN stats.unique_users.rooms IS 'Rooms with any event in the bucket.';

-- +goose StatementBegin
CREATE VIEW stats.peak_hours AS
SELECT h.room_id,
       extract(hour FROM h.bucket AT TIME ZONE s.timezone)::int AS hour_of_day,
       avg(h.avg_online_count) AS avg_online_count,
       max(h.peak_online_count) AS peak_online_count,
       count(*) AS hours
FROM stats.room_hourly AS h
CROSS JOIN report_settings AS s
GROUP BY h.room_id, 2;
-- +goose StatementEnd

COMMENT ON VIEW stats.peak_hours IS 'Presence by hour of day per room over the hourly history kept (6 months), counting only the hours in which the room had events. For a chosen range, or hours without events counted as zero, group stats.room_hourly yourself (README).';
COMMENT ON COLUMN stats.peak_hours.room_id IS 'The room.';
COMMENT ON COLUMN stats.peak_hours.hour_of_day IS 'Hour of day, 0-23, in the report time zone.';
COMMENT ON COLUMN stats.peak_hours.avg_online_count IS 'Mean of the hourly time-weighted averages.';
COMMENT ON COLUMN stats.peak_hours.peak_online_count IS 'Largest hourly peak.';
COMMENT ON COLUMN stats.peak_hours.hours IS 'Hours with events behind the figures.';

-- A group role: analysts log in with their own roles, granted membership
-- (CREATE ROLE alice LOGIN PASSWORD ... IN ROLE presence_analyst). Roles are per cluster: another
-- database of the same cluster may have made it already, or be making it at this moment.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'presence_analyst') THEN
        CREATE ROLE presence_analyst NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- made by another database's migration in between
END
$$;
-- +goose StatementEnd

GRANT USAGE ON SCHEMA stats TO presence_analyst;

GRANT SELECT ON ALL TABLES IN SCHEMA stats TO presence_analyst;

-- +goose Down
-- The schema takes with it everything this migration granted presence_analyst in this database.
DROP SCHEMA IF EXISTS stats CASCADE;

-- The role belongs to the whole server: it is dropped only when nothing depends on it any more,
-- in this database or another (another deployment's stats schema, an operator's grant, a
-- database's CONNECT privilege: pg_shdepend holds them all); otherwise it stays, for them. No
-- DROP OWNED BY: it would also revoke the role's rights on shared objects, such as CONNECT on
-- another database, and drop what it owns.
-- +goose StatementBegin
DO $$
DECLARE
    analyst oid := (SELECT oid FROM pg_roles WHERE rolname = 'presence_analyst');
BEGIN
    IF analyst IS NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid = analyst) THEN
        RAISE NOTICE 'role presence_analyst kept: other objects on this server still depend on it';
        RETURN;
    END IF;
    DROP ROLE presence_analyst;
END
$$;
-- +goose StatementEnd
