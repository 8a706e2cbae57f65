-- Every room together, per bucket of one granularity, for Totals and (hourly) PeakHours over every
-- room: the same columns as report_bucket_sums.sql, read from the all-rooms aggregate
-- {{total_agg}} (migrations/zoned/00007_report_totals.sql), one row per bucket with events:
--   d = net_delta    p = peak_rise    a = (net_delta * epoch(bucket end) - delta_moment) / L
--   $1 first bucket   $2 range end   $3 now   $4 bucket width interval   $5 zone text
-- A bucket ends width later in the zone: ((bucket AT TIME ZONE zone) + width) AT TIME ZONE zone,
-- what PostgreSQL 16's date_add(bucket, width, zone) computes (PostgreSQL 15 lacks date_add;
-- storage/postgres15_test.go compares the two). A width under a day (an hour) has no calendar part, so
-- plain + gives the same instant, and the CASE folds away when the query is planned with its
-- parameters: the zone-aware add per row cost 5 of the 31 ms of 6 months of hours.
SELECT t.bucket,
       t.net_delta AS d,
       t.peak_rise AS p,
       CASE WHEN e.bucket_end > t.bucket
            THEN ((t.net_delta * extract(epoch FROM e.bucket_end) - t.delta_moment)
                  / extract(epoch FROM e.bucket_end - t.bucket))::float8
            ELSE 0 END AS a,
       t.connections,
       t.sessions_ended,
       coalesce(t.session_seconds_sum, 0)::float8 AS session_seconds_sum
FROM {{total_agg}} AS t
CROSS JOIN LATERAL (SELECT least(CASE WHEN $4::interval < interval '1 day' THEN t.bucket + $4::interval
                       ELSE ((t.bucket AT TIME ZONE $5::text) + $4::interval) AT TIME ZONE $5::text END, $3::timestamptz) AS bucket_end) AS e
WHERE t.bucket >= $1::timestamptz AND t.bucket < $2::timestamptz
ORDER BY t.bucket
