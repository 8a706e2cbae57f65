-- Presence by hour of day over a range, for PeakHours: the hourly sums of the selected rooms
-- (the sums placeholder: report_bucket_sums.sql or report_total_sums.sql on the hourly aggregates,
-- with their parameters $1-$5) walked hour by hour over [$1, $2), carrying the summed count T,
-- then grouped by the hour of day in the zone. Only hours from the from placeholder and before
-- the until placeholder are counted (the walk may start or end a little outside them); hours not
-- begun yet are left out. Per hour of day:
--   avg_online  = the mean over the range's hours of T + a (the summed time-weighted average)
--   peak_online = the largest T + p (the summed peak)
-- T is anchored at one end of the walk (storage/reports.go numbers the parameters):
--   t0:   T at $1, the walk's start (the rooms' counts there); T at each hour adds the changes d
--         of the hours before it;
--   tend: when t0 is NULL, T at the walk's end $2 (the end of a report's last bucket, known from
--         its totals); T at each hour is tend minus the changes d from that hour on. A report
--         whose first bucket is far before the hours counted starts its walk at from this way,
--         without reading the rooms' counts there again.
WITH sums AS (
    {{sums}}
), walk AS (
    SELECT g.bucket, s.p, s.a,
           coalesce({{t0}}::bigint + coalesce(sum(s.d) OVER (ORDER BY g.bucket ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0),
                    {{tend}}::bigint - coalesce(sum(s.d) OVER (ORDER BY g.bucket ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING), 0)) AS t0
    FROM generate_series($1::timestamptz, least($2::timestamptz, $3::timestamptz) - interval '1 microsecond',
                         interval '1 hour') AS g(bucket)
    LEFT JOIN sums AS s ON s.bucket = g.bucket
)
SELECT extract(hour FROM bucket AT TIME ZONE $5::text)::int AS hour,
       avg(greatest(t0 + coalesce(a, 0), 0))::float8        AS avg_online,
       max(t0 + coalesce(p, 0))::bigint                     AS peak_online
FROM walk
WHERE bucket >= {{from}}::timestamptz AND bucket < {{until}}::timestamptz
GROUP BY 1
ORDER BY 1
