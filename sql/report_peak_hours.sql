-- Presence by hour of day over a range, for PeakHours: the hourly sums of the selected rooms
-- (the sums placeholder: report_bucket_sums.sql or report_total_sums.sql on the hourly aggregates,
-- with their parameters $1-$5) walked hour by hour with the carried total count T0, then grouped
-- by the hour of day in the zone. The walk starts at $1; only hours from the from placeholder on
-- are counted (a report reuses the counts at its first bucket's start, a few hours or days
-- before the range's first hour). Hours not begun yet are left out. Per hour of day:
--   avg_online  = the mean over the range's hours of T0 + a (the summed time-weighted average)
--   peak_online = the largest T0 + p (the summed peak)
-- The t0 placeholder is the parameter holding the summed count at $1 (storage/reports.go numbers it).
WITH sums AS (
    {{sums}}
), walk AS (
    SELECT g.bucket, s.p, s.a,
           {{t0}}::bigint + coalesce(sum(s.d) OVER (ORDER BY g.bucket ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS t0
    FROM generate_series($1::timestamptz, least($2::timestamptz, $3::timestamptz) - interval '1 microsecond',
                         interval '1 hour') AS g(bucket)
    LEFT JOIN sums AS s ON s.bucket = g.bucket
)
SELECT extract(hour FROM bucket AT TIME ZONE $5::text)::int AS hour,
       avg(greatest(t0 + coalesce(a, 0), 0))::float8        AS avg_online,
       max(t0 + coalesce(p, 0))::bigint                     AS peak_online
FROM walk
WHERE bucket >= {{from}}::timestamptz
GROUP BY 1
ORDER BY 1
