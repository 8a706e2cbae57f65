-- The zone the report aggregates were built with (migration 4).
SELECT timezone FROM report_settings
