// Package migrations holds the goose SQL migrations of the schema, embedded in the binary.
// Migrations that create continuous aggregates or call TimescaleDB policy procedures are marked
// NO TRANSACTION: TimescaleDB refuses that DDL inside a transaction block.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
