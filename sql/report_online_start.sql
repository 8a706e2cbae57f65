-- The online count of each room at the start s of a report: the online_end of its latest aggregate
-- row before s. Looking back over all history would cost as much as the history is long, so the
-- past is tiled from fine to coarse, each tile bounded, and the finest tile with a row wins:
--   hourly [day start, s)   daily [month start, day start)   monthly [year start, month start)
--   yearly before the year start
-- (storage/reports.go passes an empty tile, lo = hi, for levels finer than the report's). Exact:
-- a coarse row's online_end is that of its last hour (last(online_end, bucket)).
--   $1 rooms uuid[]   $2,$3 hourly tile   $4,$5 daily tile   $6,$7 monthly tile   $8 yearly bound
SELECT DISTINCT ON (t.room_id) t.room_id, t.online_end
FROM (
    (SELECT DISTINCT ON (h.room_id) 1 AS level, h.room_id, h.online_end
     FROM presence_room_hourly AS h
     WHERE h.room_id = ANY ($1::uuid[]) AND h.bucket >= $2::timestamptz AND h.bucket < $3::timestamptz
     ORDER BY h.room_id, h.bucket DESC)
    UNION ALL
    (SELECT DISTINCT ON (d.room_id) 2 AS level, d.room_id, d.online_end
     FROM presence_room_daily AS d
     WHERE d.room_id = ANY ($1::uuid[]) AND d.bucket >= $4::timestamptz AND d.bucket < $5::timestamptz
     ORDER BY d.room_id, d.bucket DESC)
    UNION ALL
    (SELECT DISTINCT ON (m.room_id) 3 AS level, m.room_id, m.online_end
     FROM presence_room_monthly AS m
     WHERE m.room_id = ANY ($1::uuid[]) AND m.bucket >= $6::timestamptz AND m.bucket < $7::timestamptz
     ORDER BY m.room_id, m.bucket DESC)
    UNION ALL
    (SELECT DISTINCT ON (y.room_id) 4 AS level, y.room_id, y.online_end
     FROM presence_room_yearly AS y
     WHERE y.room_id = ANY ($1::uuid[]) AND y.bucket < $8::timestamptz
     ORDER BY y.room_id, y.bucket DESC)
) AS t
ORDER BY t.room_id, t.level
