-- Run by storage.Preflight inside a transaction that is always rolled back, when TimescaleDB is
-- available but not yet created in this database: the licence setting exists only once the
-- extension is loaded here, and an Apache-only build must be refused before migration 1 runs.
CREATE EXTENSION IF NOT EXISTS timescaledb
