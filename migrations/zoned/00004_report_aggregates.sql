-- +goose NO TRANSACTION
-- Continuous aggregates behind the reports, buckets in REPORT_TIMEZONE. This is a template:
-- migrations/zoned.go replaces {{timezone}} with the zone (validated, quoted as a
-- literal) and hands goose the result as 00004_report_aggregates.sql. NO TRANSACTION: TimescaleDB
-- refuses continuous-aggregate DDL inside a transaction block; goose runs each statement alone.
--
-- Room aggregates make peaks and time-weighted averages exact without sampling: the online count
-- N of a room only changes at events, so for a bucket [b0, b1) with N0 = N at b0
--   integral of N dt = N0 * (b1 - b0) + net_delta * b1 - delta_moment      (times as epoch seconds)
--   peak             = greatest(N0, peak_in)
-- and N0 is the online_end of the room's previous row (storage/reports.go carries it forward).
-- Rolled up, max(peak_in) is still "the largest count reached at an event in the bucket" and
-- last(online_end, bucket) the count at its end, so the same formulas hold at every level.
-- User aggregates keep one row per (bucket, room, user): distinct users are counted at query time.


-- +goose Up
-- The zone the buckets were built with: serve refuses to start when REPORT_TIMEZONE differs.
CREATE TABLE IF NOT EXISTS report_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    timezone  text    NOT NULL
);

-- A re-run after an interruption must bucket in the zone the first run began with: the aggregates
-- it made already have that zone baked in.
-- +goose StatementBegin
DO $$
BEGIN
    INSERT INTO report_settings (timezone) VALUES ({{timezone}}) ON CONFLICT (singleton) DO NOTHING;
    IF (SELECT timezone FROM report_settings) <> {{timezone}} THEN
        RAISE EXCEPTION 'report aggregates: this database was begun with REPORT_TIMEZONE=%, not %: migrate with that zone',
            (SELECT timezone FROM report_settings), {{timezone}};
    END IF;
END
$$;
-- +goose StatementEnd

-- room aggregates: hourly on the raw events, daily on hourly, weekly and monthly on daily, yearly on monthly.
CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts, {{timezone}}) AS bucket,
       room_id,
       max(online_after)                                                   AS peak_in,
       last(online_after, ts)                                              AS online_end,
       sum(online_delta)::bigint                                           AS net_delta,
       sum(online_delta * extract(epoch FROM ts))                          AS delta_moment,
       count(*) FILTER (WHERE event_type = 'connected')                    AS connections,
       count(*) FILTER (WHERE event_type = 'disconnected')                 AS sessions_ended,
       sum(session_seconds) FILTER (WHERE event_type = 'disconnected')     AS session_seconds_sum,
       count(*)                                                            AS events
FROM presence_events
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket, {{timezone}}) AS bucket,
       room_id,
       max(peak_in)                     AS peak_in,
       last(online_end, bucket)         AS online_end,
       sum(net_delta)::bigint           AS net_delta,
       sum(delta_moment)                AS delta_moment,
       sum(connections)::bigint         AS connections,
       sum(sessions_ended)::bigint      AS sessions_ended,
       sum(session_seconds_sum)         AS session_seconds_sum,
       sum(events)::bigint              AS events
FROM presence_room_hourly
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_weekly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 week', bucket, {{timezone}}) AS bucket,
       room_id,
       max(peak_in)                     AS peak_in,
       last(online_end, bucket)         AS online_end,
       sum(net_delta)::bigint           AS net_delta,
       sum(delta_moment)                AS delta_moment,
       sum(connections)::bigint         AS connections,
       sum(sessions_ended)::bigint      AS sessions_ended,
       sum(session_seconds_sum)         AS session_seconds_sum,
       sum(events)::bigint              AS events
FROM presence_room_daily
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_monthly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 month', bucket, {{timezone}}) AS bucket,
       room_id,
       max(peak_in)                     AS peak_in,
       last(online_end, bucket)         AS online_end,
       sum(net_delta)::bigint           AS net_delta,
       sum(delta_moment)                AS delta_moment,
       sum(connections)::bigint         AS connections,
       sum(sessions_ended)::bigint      AS sessions_ended,
       sum(session_seconds_sum)         AS session_seconds_sum,
       sum(events)::bigint              AS events
FROM presence_room_daily
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_room_yearly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 year', bucket, {{timezone}}) AS bucket,
       room_id,
       max(peak_in)                     AS peak_in,
       last(online_end, bucket)         AS online_end,
       sum(net_delta)::bigint           AS net_delta,
       sum(delta_moment)                AS delta_moment,
       sum(connections)::bigint         AS connections,
       sum(sessions_ended)::bigint      AS sessions_ended,
       sum(session_seconds_sum)         AS session_seconds_sum,
       sum(events)::bigint              AS events
FROM presence_room_monthly
GROUP BY 1, 2
WITH NO DATA;

-- user aggregates: hourly on the raw events, daily on hourly, weekly and monthly on daily, yearly on monthly.
CREATE MATERIALIZED VIEW IF NOT EXISTS presence_user_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts, {{timezone}}) AS bucket,
       room_id,
       user_id,
       count(*) AS events
FROM presence_events
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_user_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket, {{timezone}}) AS bucket,
       room_id,
       user_id,
       sum(events)::bigint AS events
FROM presence_user_hourly
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_user_weekly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 week', bucket, {{timezone}}) AS bucket,
       room_id,
       user_id,
       sum(events)::bigint AS events
FROM presence_user_daily
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_user_monthly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 month', bucket, {{timezone}}) AS bucket,
       room_id,
       user_id,
       sum(events)::bigint AS events
FROM presence_user_daily
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS presence_user_yearly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 year', bucket, {{timezone}}) AS bucket,
       room_id,
       user_id,
       sum(events)::bigint AS events
FROM presence_user_monthly
GROUP BY 1, 2, 3
WITH NO DATA;

-- Refresh policies. Each window ends 1 hour back (the real-time part covers the rest) and starts
-- well inside its source's retention: refreshing a range whose source rows were dropped would
-- erase the aggregate rows (raw 30 days > 28; hourly 6 months > 60 days; daily 2 years > 6 months).
SELECT add_continuous_aggregate_policy('presence_room_hourly',
    start_offset => INTERVAL '28 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_room_daily',
    start_offset => INTERVAL '60 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_room_weekly',
    start_offset => INTERVAL '90 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_room_monthly',
    start_offset => INTERVAL '6 months', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_room_yearly',
    start_offset => INTERVAL '3 years', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_user_hourly',
    start_offset => INTERVAL '28 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_user_daily',
    start_offset => INTERVAL '60 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_user_weekly',
    start_offset => INTERVAL '90 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_user_monthly',
    start_offset => INTERVAL '6 months', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

SELECT add_continuous_aggregate_policy('presence_user_yearly',
    start_offset => INTERVAL '3 years', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 day', if_not_exists => true);

-- Retention: hourly 6 months, daily 2 years; weekly, monthly and yearly are kept.
SELECT add_retention_policy('presence_room_hourly', drop_after => INTERVAL '6 months', if_not_exists => true);

SELECT add_retention_policy('presence_room_daily', drop_after => INTERVAL '2 years', if_not_exists => true);

SELECT add_retention_policy('presence_user_hourly', drop_after => INTERVAL '6 months', if_not_exists => true);

SELECT add_retention_policy('presence_user_daily', drop_after => INTERVAL '2 years', if_not_exists => true);

-- Columnstore on the hourly aggregates after 7 days (they are the large ones).
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates
               WHERE view_schema = current_schema() AND view_name = 'presence_room_hourly' AND compression_enabled) THEN
        ALTER MATERIALIZED VIEW presence_room_hourly SET (
            timescaledb.enable_columnstore = true,
            timescaledb.segmentby = 'room_id',
            timescaledb.orderby = 'bucket DESC'
        );
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates
               WHERE view_schema = current_schema() AND view_name = 'presence_user_hourly' AND compression_enabled) THEN
        ALTER MATERIALIZED VIEW presence_user_hourly SET (
            timescaledb.enable_columnstore = true,
            timescaledb.segmentby = 'room_id',
            timescaledb.orderby = 'bucket DESC, user_id'
        );
    END IF;
END
$$;
-- +goose StatementEnd

CALL add_columnstore_policy('presence_room_hourly', after => INTERVAL '7 days', if_not_exists => true);

CALL add_columnstore_policy('presence_user_hourly', after => INTERVAL '7 days', if_not_exists => true);

-- +goose Down
-- Undoes up.sql. Dropping a continuous aggregate removes its policies; children go first.

DROP MATERIALIZED VIEW IF EXISTS presence_user_yearly;

DROP MATERIALIZED VIEW IF EXISTS presence_user_monthly;

DROP MATERIALIZED VIEW IF EXISTS presence_user_weekly;

DROP MATERIALIZED VIEW IF EXISTS presence_user_daily;

DROP MATERIALIZED VIEW IF EXISTS presence_user_hourly;

DROP MATERIALIZED VIEW IF EXISTS presence_room_yearly;

DROP MATERIALIZED VIEW IF EXISTS presence_room_monthly;

DROP MATERIALIZED VIEW IF EXISTS presence_room_weekly;

DROP MATERIALIZED VIEW IF EXISTS presence_room_daily;

DROP MATERIALIZED VIEW IF EXISTS presence_room_hourly;

DROP TABLE IF EXISTS report_settings;
