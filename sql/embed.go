// Package queries holds the SQL the storage package runs, one statement per .sql file, embedded
// in the binary (embed cannot reach "..", so the files and this embed.go live together).
package queries

import "embed"

// FS holds every query file.
//
//go:embed *.sql
var FS embed.FS
