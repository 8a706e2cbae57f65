-- Every room seen in the aggregates (the yearly one is the smallest and is never dropped).
SELECT DISTINCT room_id FROM presence_room_yearly ORDER BY room_id
