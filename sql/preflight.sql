-- What `presenced migrate up` and `presenced serve` check before their first statement
-- (storage.Preflight): the PostgreSQL version, the TimescaleDB this database has or could create,
-- and its licence. Read-only, and valid on a PostgreSQL without TimescaleDB: the licence setting
-- is read with missing_ok, so it is NULL where the library is not loaded.
SELECT current_setting('server_version_num')::int                                 AS server_version_num,
       current_setting('server_version')                                          AS server_version,
       (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')        AS installed_version,
       (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb') AS available_version,
       current_setting('timescaledb.license', true)                               AS license
