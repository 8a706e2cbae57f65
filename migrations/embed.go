// Package migrations holds the goose SQL migrations of the schema, embedded in the binary.
// Migrations that create continuous aggregates or call TimescaleDB policy procedures are marked
// NO TRANSACTION: TimescaleDB refuses that DDL inside a transaction block.
//
// Rules for every migration (docs/operations.md, "Migrations on a real server"):
//   - SQL valid on PostgreSQL 15 (no date_add, any_value, SQL/JSON...): the local engine is 17,
//     so storage's TestSQLRunsOnPostgreSQL15 checks the text.
//   - Every statement of a NO TRANSACTION migration is safe to run twice (IF NOT EXISTS,
//     CREATE OR REPLACE, if_not_exists => true, guarded DO blocks): an interrupted one is re-run
//     whole. TestMigrationsRerunAfterInterruption tries every interruption point.
//   - Refresh an aggregate before adding its policy: the scheduler may start the policy at once.
//   - Roles are per server: create them if missing, drop them only when nothing depends on them.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
