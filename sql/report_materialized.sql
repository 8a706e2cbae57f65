-- The tables TimescaleDB materializes some aggregates into (migration 4), as quoted names, for the
-- report queries that read them directly below their last materialized bucket:
-- report_recent_users.sql (per-user weekly, monthly and quarterly: migration 10), report_online_start.sql (room monthly
-- and yearly) and report_users_marks.sql (all four).
SELECT view_name, format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
FROM timescaledb_information.continuous_aggregates
WHERE view_schema = current_schema()
  AND view_name IN ('presence_user_weekly', 'presence_user_monthly', 'presence_user_quarterly', 'presence_room_monthly',
                    'presence_room_yearly')
