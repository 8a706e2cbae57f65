-- The history's last word on rooms' counts, read while Redis is unreachable (handlers' fallback):
-- for each room of $1, in the order given, online_after and ts of its newest event (any type; a
-- heartbeat carries the count too), NULLs for a room without events in the retention window.
-- One statement for all rooms; per room one probe of presence_events_room_ts_idx (room_id, ts DESC)
-- per chunk, newest chunk first, stopping at the first row (LIMIT 1 under the LATERAL).
SELECT e.ts, e.online_after
FROM unnest($1::uuid[]) WITH ORDINALITY AS r(room_id, ord)
LEFT JOIN LATERAL (
    SELECT p.ts, p.online_after
    FROM presence_events p
    WHERE p.room_id = r.room_id
    ORDER BY p.ts DESC
    LIMIT 1
) e ON true
ORDER BY r.ord;
