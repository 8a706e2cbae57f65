-- +goose NO TRANSACTION
-- The unique-user count aggregates of migration 6 (presence_room_users_*, presence_all_users_*)
-- become materialized-only. Their real-time part recomputed the bucket in progress from the
-- per-user aggregates below them, through every level of the hierarchy, and a report asking for
-- both counts paid for it twice; with a month or a year in progress that was most of a report's
-- time. Reports now read the counts up to the last materialized bucket here and count the
-- buckets after it once, from the real-time per-user aggregates (sql/report_recent_users.sql),
-- so what they return still includes the events of the last minutes.

-- +goose Up
ALTER MATERIALIZED VIEW presence_room_users_hourly SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW presence_room_users_daily SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW presence_room_users_weekly SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW presence_room_users_monthly SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW presence_room_users_yearly SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW presence_all_users_hourly SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW presence_all_users_daily SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW presence_all_users_weekly SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW presence_all_users_monthly SET (timescaledb.materialized_only = true);
ALTER MATERIALIZED VIEW presence_all_users_yearly SET (timescaledb.materialized_only = true);

-- +goose Down
ALTER MATERIALIZED VIEW presence_room_users_hourly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW presence_room_users_daily SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW presence_room_users_weekly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW presence_room_users_monthly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW presence_room_users_yearly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW presence_all_users_hourly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW presence_all_users_daily SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW presence_all_users_weekly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW presence_all_users_monthly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW presence_all_users_yearly SET (timescaledb.materialized_only = false);
