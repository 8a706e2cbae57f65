-- The tables TimescaleDB materializes the weekly and monthly per-user aggregates into (migration 4),
-- as quoted names, for report_recent_users.sql and report_users_marks.sql.
SELECT view_name, format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
FROM timescaledb_information.continuous_aggregates
WHERE view_schema = current_schema() AND view_name IN ('presence_user_weekly', 'presence_user_monthly')
